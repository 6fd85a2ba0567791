package tflite

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"strings"

	tfl "github.com/mattn/go-tflite"
)

var (
	// ErrInvalidModel is wrapped by errors about a file that is not a valid
	// edge classifier: not TFLite, truncated, corrupt, wrong tensors or
	// metadata.
	ErrInvalidModel = errors.New("invalid model")
	// ErrWrongModel is wrapped by Load's error when the model is valid but
	// not what WithExpect asked for.
	ErrWrongModel = errors.New("wrong model")
	// ErrClosed is wrapped by Classify's error after Close.
	ErrClosed = errors.New("model is closed")
)

// Option configures Load.
type Option func(*config)

type config struct {
	threads       int
	xnnpack       bool
	expectTask    string
	expectClasses int
	runtimeLog    func(string) // nil: the library's lines go to stderr
	requireDigest bool
}

// WithRequireDigest makes Load refuse a model whose metadata has no sha256
// digest (files exported before digests). A digest that is there is always
// checked: a file that does not match it is refused with ErrDigest.
func WithRequireDigest(on bool) Option { return func(c *config) { c.requireDigest = on } }

// WithThreads sets how many threads one inference may use, in TFLite's own
// kernels and in XNNPACK. The default is 1: edge runs the face detector and
// several classifiers side by side on small CPUs, so it parallelises across
// models, not inside one.
func WithThreads(n int) Option { return func(c *config) { c.threads = n } }

// WithXNNPACK turns the XNNPACK delegate on (the default) or off. It is set
// up for int8 (QS8) operators, typically 2-3x faster than TFLite's built-in
// int8 kernels; turn it off to compare, or if it misbehaves on a platform.
func WithXNNPACK(on bool) Option { return func(c *config) { c.xnnpack = on } }

// WithExpect makes Load fail with ErrWrongModel unless the model's metadata
// names this task and it has this many classes: it catches a model file
// passed in the wrong place. An empty task or classes <= 0 checks nothing
// for that part.
func WithExpect(task string, classes int) Option {
	return func(c *config) { c.expectTask, c.expectClasses = task, classes }
}

// Model is a loaded classifier: one TFLite interpreter with its input and
// output tensors.
//
// A Model is not safe for concurrent use: Classify writes the interpreter's
// single input tensor and runs it. Use one Model per goroutine, or a lock.
type Model struct {
	meta Meta

	model    *tfl.Model
	options  *tfl.InterpreterOptions
	delegate *xnnpackDelegate // nil without XNNPACK
	interp   *tfl.Interpreter

	// in and out alias the interpreter's tensor buffers in C memory, valid
	// until Close; TFLite keeps them in place after AllocateTensors.
	in  []byte
	out []int8
	// fastIn: the input quantization is the contract's scale 1/255, zero
	// point -128, where q = pixel-128, i.e. the pixel with its top bit
	// flipped. Otherwise inLUT maps each pixel value to its quantized value.
	fastIn   bool
	inLUT    [256]byte
	outScale float32
	outZero  int32
}

// Load reads, validates and prepares the model file at path.
//
// Each Load copies the model into C memory for the Model's lifetime: load a
// model once and reuse it, and Close it when done.
func Load(path string, opts ...Option) (*Model, error) {
	m, err := load(path, opts)
	if err != nil {
		return nil, fmt.Errorf("tflite: load %s: %w", path, err)
	}
	return m, nil
}

func load(path string, opts []Option) (*Model, error) {
	cfg := config{threads: 1, xnnpack: true}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.threads < 1 {
		return nil, fmt.Errorf("threads %d, want at least 1", cfg.threads)
	}
	buf, err := readFile(path)
	if err != nil {
		return nil, err
	}
	return fromBytes(buf, cfg)
}

// fromBytes checks a model file's contents and starts a Model for it.
func fromBytes(buf []byte, cfg config) (*Model, error) {
	g, err := readGraph(buf)
	if err != nil {
		return nil, err
	}
	s, err := checkModel(g)
	if err != nil {
		return nil, err
	}
	if err := checkDigest(buf, s.meta, cfg.requireDigest); err != nil {
		return nil, err
	}
	if (cfg.expectTask != "" && s.meta.Task != cfg.expectTask) || (cfg.expectClasses > 0 && s.k != cfg.expectClasses) {
		var want []string
		if cfg.expectTask != "" {
			want = append(want, fmt.Sprintf("task %q", cfg.expectTask))
		}
		if cfg.expectClasses > 0 {
			want = append(want, fmt.Sprintf("%d classes", cfg.expectClasses))
		}
		return nil, fmt.Errorf("%w: model is for task %q with %d classes, want %s",
			ErrWrongModel, s.meta.Task, s.k, strings.Join(want, " with "))
	}

	m := &Model{meta: s.meta, outScale: s.out.scale, outZero: s.out.zero}
	if err := m.start(buf, s, cfg); err != nil {
		m.Close()
		return nil, err
	}
	m.setInput(s.in)
	return m, nil
}

// setInput prepares quantize for the input quantization q.
func (m *Model) setInput(q affine) {
	m.fastIn = true
	for p := range 256 {
		v := math.Round(float64(p)/255/float64(q.scale)) + float64(q.zero)
		m.inLUT[p] = byte(int8(max(math.MinInt8, min(math.MaxInt8, v))))
		m.fastIn = m.fastIn && m.inLUT[p] == byte(p)^0x80
	}
}

// readFile reads a model file, refusing sizes no model of ours can have
// before reading it all into memory.
func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, unwrapPath(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, unwrapPath(err)
	}
	switch size := st.Size(); {
	case !st.Mode().IsRegular():
		return nil, fmt.Errorf("%w: not a regular file", ErrInvalidModel)
	case size < minFileSize:
		return nil, fmt.Errorf("%w: %d bytes is too short for a TFLite model", ErrInvalidModel, size)
	case size > maxFileSize:
		return nil, fmt.Errorf("%w: %d bytes is larger than the %d a model may have", ErrInvalidModel, size, maxFileSize)
	}
	buf := make([]byte, st.Size())
	if _, err := io.ReadFull(f, buf); err != nil {
		return nil, fmt.Errorf("read: %w", err)
	}
	return buf, nil
}

// unwrapPath drops the path from an *fs.PathError: the caller's message
// already names the file.
func unwrapPath(err error) error {
	if pe, ok := errors.AsType[*fs.PathError](err); ok {
		return fmt.Errorf("%s: %w", pe.Op, pe.Err)
	}
	return err
}

// start creates the TFLite objects for a checked model and checks that the
// runtime sees the tensors the file check saw.
func (m *Model) start(buf []byte, s spec, cfg config) error {
	// TFLite verifies the flatbuffer again here and prints why it rejects
	// one to stderr. go-tflite's SetErrorReporter would garble that message,
	// so the default reporter is kept.
	if m.model = tfl.NewModel(buf); m.model == nil {
		return fmt.Errorf("%w: TFLite rejected the model (reason on stderr)", ErrInvalidModel)
	}
	if m.options = tfl.NewInterpreterOptions(); m.options == nil {
		return errors.New("cannot create TFLite interpreter options")
	}
	m.options.SetNumThread(cfg.threads)
	if cfg.xnnpack {
		var d *xnnpackDelegate
		var err error
		if cfg.runtimeLog != nil {
			captureStderr(cfg.runtimeLog, func() { d, err = newXNNPACK(cfg.threads) })
		} else {
			d, err = newXNNPACK(cfg.threads)
		}
		if err != nil {
			return err
		}
		m.delegate = d
		m.options.AddDelegate(d)
	}
	if m.interp = tfl.NewInterpreter(m.model, m.options); m.interp == nil {
		// Past the checks above this is the model (an operator or version
		// this TFLite lacks, inconsistent shapes) or, rarely, XNNPACK.
		hint := ""
		if cfg.xnnpack {
			hint = " with XNNPACK"
		}
		return fmt.Errorf("%w: TFLite cannot create an interpreter for it%s (reason on stderr)", ErrInvalidModel, hint)
	}
	if st := m.interp.AllocateTensors(); st != tfl.OK {
		return fmt.Errorf("%w: TFLite cannot allocate its tensors (status %d, reason on stderr)", ErrInvalidModel, st)
	}

	if n, k := m.interp.GetInputTensorCount(), m.interp.GetOutputTensorCount(); n != 1 || k != 1 {
		return fmt.Errorf("runtime sees %d inputs and %d outputs, want 1 and 1", n, k)
	}
	in, err := runtimeTensor(m.interp.GetInputTensor(0), "input", []int{1, s.h, s.w, s.c}, s.in)
	if err != nil {
		return err
	}
	out, err := runtimeTensor(m.interp.GetOutputTensor(0), "output", []int{1, s.k}, s.out)
	if err != nil {
		return err
	}
	m.in = in
	m.out = unsafeInt8s(out)
	return nil
}

// runtimeTensor checks a tensor as the C API reports it against what the
// file said (the C API numbers types differently from the file format; INT8
// is 9 in both) and returns its data buffer.
func runtimeTensor(t *tfl.Tensor, what string, shape []int, q affine) ([]byte, error) {
	if t == nil {
		return nil, fmt.Errorf("runtime has no %s tensor", what)
	}
	if t.Type() != tfl.Int8 {
		return nil, fmt.Errorf("runtime %s tensor is %v, want Int8", what, t.Type())
	}
	got := t.Shape()
	n := 1
	for _, d := range shape {
		n *= d
	}
	if !equalInts(got, shape) || t.ByteSize() != uint(n) {
		return nil, fmt.Errorf("runtime %s tensor has shape %v (%d bytes), want %v", what, got, t.ByteSize(), shape)
	}
	if rq := t.QuantizationParams(); rq.Scale != float64(q.scale) || rq.ZeroPoint != int(q.zero) {
		return nil, fmt.Errorf("runtime %s quantization %g/%d differs from the file's %g/%d", what, rq.Scale, rq.ZeroPoint, q.scale, q.zero)
	}
	p := t.Data()
	if p == nil {
		return nil, fmt.Errorf("runtime %s tensor has no data buffer", what)
	}
	return unsafeBytes(p, n), nil
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Meta returns the model's metadata. The result is a copy.
func (m *Model) Meta() Meta { return m.meta.clone() }

// DelegatedNodes reports how many of the graph's operator nodes XNNPACK took
// over (the rest run on TFLite's built-in kernels). Both are 0 without
// XNNPACK. edge's CNNs give all but RESHAPE and SOFTMAX to XNNPACK; taken
// 0 means XNNPACK is doing nothing.
func (m *Model) DelegatedNodes() (taken, total int) {
	if m.delegate == nil {
		return 0, 0
	}
	taken, total, _ = m.delegate.nodes()
	return taken, total
}

// Classify runs the model on one image and writes the class probabilities
// (in Meta().Labels order) to probs.
//
// pixels holds Height*Width*Channels bytes, row by row: 8-bit grey values
// for a ColorGray model, or per pixel the three bytes Y, Cb, Cr for a
// ColorYCbCr model. Every byte is quantized the same way (the contract's
// q = value-128). probs must have one element per label. Classify does not
// allocate.
func (m *Model) Classify(pixels []byte, probs []float32) error {
	if m.interp == nil {
		return fmt.Errorf("tflite: classify: %w", ErrClosed)
	}
	if len(pixels) != len(m.in) {
		in := m.meta.Input
		return fmt.Errorf("tflite: classify: %d pixel bytes, want %d (%dx%dx%d)", len(pixels), len(m.in), in.Width, in.Height, in.Channels)
	}
	if len(probs) != len(m.out) {
		return fmt.Errorf("tflite: classify: room for %d probabilities, want %d", len(probs), len(m.out))
	}
	m.quantize(pixels)
	if st := m.interp.Invoke(); st != tfl.OK {
		return fmt.Errorf("tflite: classify: TFLite invoke failed (status %d, reason on stderr)", st)
	}
	for i, q := range m.out {
		probs[i] = float32(int32(q)-m.outZero) * m.outScale
	}
	return nil
}

// quantize writes pixels (len(m.in) of them) into the input tensor.
func (m *Model) quantize(pixels []byte) {
	dst := m.in
	if !m.fastIn {
		for i, p := range pixels {
			dst[i] = m.inLUT[p]
		}
		return
	}
	// Flip the top bit of eight pixels at a time.
	const flip = 0x8080808080808080
	i := 0
	for ; i+8 <= len(pixels); i += 8 {
		binary.LittleEndian.PutUint64(dst[i:], binary.LittleEndian.Uint64(pixels[i:])^flip)
	}
	for ; i < len(pixels); i++ {
		dst[i] = pixels[i] ^ 0x80
	}
}

// Close frees the interpreter, the delegate and the model. It is safe to
// call more than once; Classify fails after it.
func (m *Model) Close() error {
	// The interpreter uses the delegate and the model's buffer: it goes
	// first.
	if m.interp != nil {
		m.interp.Delete()
		m.interp = nil
	}
	if m.options != nil {
		m.options.Delete()
		m.options = nil
	}
	if m.delegate != nil {
		m.delegate.Delete()
		m.delegate = nil
	}
	if m.model != nil {
		m.model.Delete()
		m.model = nil
	}
	m.in, m.out = nil, nil
	return nil
}
