package tflite

import "unsafe"

// unsafeBytes views n bytes of C memory at p as a slice. The memory is
// TFLite's, not the Go heap's: the slice must not be used after TFLite frees
// it (Model.Close).
func unsafeBytes(p unsafe.Pointer, n int) []byte {
	return unsafe.Slice((*byte)(p), n)
}

// unsafeInt8s reinterprets b's bytes as int8 without copying.
func unsafeInt8s(b []byte) []int8 {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Slice((*int8)(unsafe.Pointer(&b[0])), len(b))
}
