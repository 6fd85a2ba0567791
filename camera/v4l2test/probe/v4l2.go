package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"syscall"
	"unsafe"
)

// The few V4L2 ioctls the writer and ctrl commands need, on amd64 and
// arm64 (both LP64, where these structs have the same layout). Checked
// against <linux/videodev2.h> of Debian bookworm.
const (
	vidiocSFmt      = 0xc0d05605 // _IOWR('V', 5, struct v4l2_format), 208 bytes
	vidiocSParm     = 0xc0cc5616 // _IOWR('V', 22, struct v4l2_streamparm), 204 bytes
	vidiocQueryCtrl = 0xc0445624 // _IOWR('V', 36, struct v4l2_queryctrl), 68 bytes
	vidiocSCtrl     = 0xc008561c // _IOWR('V', 28, struct v4l2_control), 8 bytes
	vidiocGCtrl     = 0xc008561b // _IOWR('V', 27, struct v4l2_control), 8 bytes

	bufTypeVideoOutput = 2
	fieldNone          = 1
	colorspaceJPEG     = 7
	colorspaceSRGB     = 8
	ctrlFlagNextCtrl   = 0x80000000
	ctrlFlagDisabled   = 0x1
)

func fourCC(s string) uint32 {
	return uint32(s[0]) | uint32(s[1])<<8 | uint32(s[2])<<16 | uint32(s[3])<<24
}

func fourCCString(c uint32) string {
	return string([]byte{byte(c), byte(c >> 8), byte(c >> 16), byte(c >> 24)})
}

func ioctl(fd int, req uintptr, arg unsafe.Pointer) error {
	for {
		_, _, errno := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), req, uintptr(arg))
		switch errno {
		case 0:
			return nil
		case syscall.EINTR:
			continue
		}
		return errno
	}
}

// setOutputFormat sets the format of a video output device (a v4l2loopback
// node seen from the writer's side) and returns the buffer size the driver
// settled on.
func setOutputFormat(fd int, pixfmt uint32, w, h, bytesPerLine, sizeImage int) (int, error) {
	var f [208]byte
	le := binary.LittleEndian
	le.PutUint32(f[0:], bufTypeVideoOutput)
	pix := f[8:] // the union is 8-byte aligned
	le.PutUint32(pix[0:], uint32(w))
	le.PutUint32(pix[4:], uint32(h))
	le.PutUint32(pix[8:], pixfmt)
	le.PutUint32(pix[12:], fieldNone)
	le.PutUint32(pix[16:], uint32(bytesPerLine))
	le.PutUint32(pix[20:], uint32(sizeImage))
	cs := uint32(colorspaceSRGB)
	if pixfmt == fourCC("MJPG") {
		cs = colorspaceJPEG
	}
	le.PutUint32(pix[24:], cs)
	if err := ioctl(fd, vidiocSFmt, unsafe.Pointer(&f[0])); err != nil {
		return 0, fmt.Errorf("VIDIOC_S_FMT: %w", err)
	}
	if got := le.Uint32(pix[8:]); got != pixfmt || le.Uint32(pix[0:]) != uint32(w) || le.Uint32(pix[4:]) != uint32(h) {
		return 0, fmt.Errorf("VIDIOC_S_FMT: driver set %s %dx%d", fourCCString(le.Uint32(pix[8:])), le.Uint32(pix[0:]), le.Uint32(pix[4:]))
	}
	return int(le.Uint32(pix[20:])), nil
}

// setOutputRate sets the frame interval of a video output device.
func setOutputRate(fd, fps int) error {
	var p [204]byte
	le := binary.LittleEndian
	le.PutUint32(p[0:], bufTypeVideoOutput)
	le.PutUint32(p[12:], 1)           // timeperframe.numerator
	le.PutUint32(p[16:], uint32(fps)) // timeperframe.denominator
	if err := ioctl(fd, vidiocSParm, unsafe.Pointer(&p[0])); err != nil {
		return fmt.Errorf("VIDIOC_S_PARM: %w", err)
	}
	return nil
}

// control is one V4L2 control as VIDIOC_QUERYCTRL describes it.
type control struct {
	id       uint32
	name     string
	min, max int32
}

// findControl looks a control up by its name (case-insensitive).
func findControl(fd int, name string) (control, error) {
	var names []string
	id := uint32(ctrlFlagNextCtrl)
	for {
		var q [68]byte
		le := binary.LittleEndian
		le.PutUint32(q[0:], id)
		if err := ioctl(fd, vidiocQueryCtrl, unsafe.Pointer(&q[0])); err != nil {
			if err == syscall.EINVAL {
				break // past the last control
			}
			return control{}, fmt.Errorf("VIDIOC_QUERYCTRL: %w", err)
		}
		c := control{
			id:   le.Uint32(q[0:]),
			name: string(bytes.TrimRight(q[8:40], "\x00")),
			min:  int32(le.Uint32(q[40:])),
			max:  int32(le.Uint32(q[44:])),
		}
		if le.Uint32(q[56:])&ctrlFlagDisabled == 0 {
			if equalFold(c.name, name) {
				return c, nil
			}
			names = append(names, c.name)
		}
		id = c.id | ctrlFlagNextCtrl
	}
	return control{}, fmt.Errorf("no control %q; the device has: %q", name, names)
}

func equalFold(a, b string) bool { return bytes.EqualFold([]byte(a), []byte(b)) }

// setControl sets a control and reads it back.
func setControl(fd int, id uint32, value int32) (int32, error) {
	var c [8]byte
	le := binary.LittleEndian
	le.PutUint32(c[0:], id)
	le.PutUint32(c[4:], uint32(value))
	if err := ioctl(fd, vidiocSCtrl, unsafe.Pointer(&c[0])); err != nil {
		return 0, fmt.Errorf("VIDIOC_S_CTRL: %w", err)
	}
	if err := ioctl(fd, vidiocGCtrl, unsafe.Pointer(&c[0])); err != nil {
		return 0, fmt.Errorf("VIDIOC_G_CTRL: %w", err)
	}
	return int32(le.Uint32(c[4:])), nil
}
