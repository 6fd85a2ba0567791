package tflite

/*
#cgo CFLAGS: -I${SRCDIR}/include
#cgo LDFLAGS: -ltensorflowlite_c

#include <stdlib.h>
#include "edge/xnnpack_delegate.h"

// edge_delegate wraps an XNNPACK delegate to count the nodes it takes: the
// C API has no call that shows the execution plan, and the log line XNNPACK
// prints at creation appears whether or not it takes anything. The wrapper
// is the delegate TFLite sees; it shares XNNPACK's data_, so the kernels
// XNNPACK registers (which look up data_ through the delegate pointer they
// are given) work unchanged.
typedef struct edge_delegate {
	TfLiteDelegate d;      // must be first: TFLite passes &d back to Prepare
	TfLiteDelegate* inner; // the real XNNPACK delegate, owned
	int nodes_before;      // execution plan size before XNNPACK's Prepare
	int nodes_after;       // ... and after it
	int kernels;           // delegate kernel nodes in the plan afterwards
} edge_delegate;

static int edge_plan_size(TfLiteContext* ctx, TfLiteDelegate* self, int* kernels) {
	TfLiteIntArray* plan = NULL;
	if (ctx->GetExecutionPlan(ctx, &plan) != kTfLiteOk || plan == NULL) {
		return -1;
	}
	int n = plan->size;
	if (kernels != NULL) {
		*kernels = 0;
		for (int i = 0; i < n; i++) {
			TfLiteNode* node = NULL;
			TfLiteRegistration* reg = NULL;
			if (ctx->GetNodeAndRegistration(ctx, plan->data[i], &node, &reg) == kTfLiteOk &&
			    node != NULL && node->delegate == self) {
				(*kernels)++;
			}
		}
	}
	return n;
}

static TfLiteStatus edge_delegate_prepare(TfLiteContext* ctx, TfLiteDelegate* d) {
	edge_delegate* e = (edge_delegate*)d;
	e->nodes_before = edge_plan_size(ctx, d, NULL);
	TfLiteStatus s = e->inner->Prepare(ctx, d);
	e->nodes_after = edge_plan_size(ctx, d, &e->kernels);
	return s;
}

static edge_delegate* edge_delegate_new(int32_t threads) {
	EdgeXNNPackDelegateOptions o = TfLiteXNNPackDelegateOptionsDefault();
	o.num_threads = threads;
	o.flags |= EDGE_XNNPACK_FLAG_QS8;
	TfLiteDelegate* inner = TfLiteXNNPackDelegateCreate(&o);
	if (inner == NULL) {
		return NULL;
	}
	edge_delegate* e = calloc(1, sizeof(*e));
	if (e == NULL) {
		TfLiteXNNPackDelegateDelete(inner);
		return NULL;
	}
	e->d = *inner;
	e->d.Prepare = edge_delegate_prepare;
	e->inner = inner;
	e->nodes_before = e->nodes_after = -1;
	return e;
}

static void edge_delegate_delete(edge_delegate* e) {
	TfLiteXNNPackDelegateDelete(e->inner);
	free(e);
}
*/
import "C"

import (
	"errors"
	"unsafe"
)

// xnnpackDelegate is the XNNPACK delegate with the QS8 flag set, which
// go-tflite's delegates/xnnpack package cannot set (and whose link flags name
// libraries our TFLite build does not have). It implements
// github.com/mattn/go-tflite/delegates.Delegater so it can be handed to
// InterpreterOptions.AddDelegate. It must outlive the interpreter using it.
type xnnpackDelegate struct {
	e *C.edge_delegate
}

func newXNNPACK(threads int) (*xnnpackDelegate, error) {
	e := C.edge_delegate_new(C.int32_t(threads))
	if e == nil {
		return nil, errors.New("cannot create XNNPACK delegate")
	}
	return &xnnpackDelegate{e: e}, nil
}

// Delete frees the delegate; it is safe to call more than once.
func (d *xnnpackDelegate) Delete() {
	if d.e != nil {
		C.edge_delegate_delete(d.e)
		d.e = nil
	}
}

// Ptr returns the TfLiteDelegate* TFLite should use.
func (d *xnnpackDelegate) Ptr() unsafe.Pointer {
	return unsafe.Pointer(&d.e.d)
}

// nodes reports how many operator nodes the delegate took and how many the
// graph had when it was applied; ok is false if TFLite never applied it.
func (d *xnnpackDelegate) nodes() (taken, total int, ok bool) {
	if d.e == nil || d.e.nodes_before < 0 || d.e.nodes_after < 0 {
		return 0, 0, false
	}
	before, after, kernels := int(d.e.nodes_before), int(d.e.nodes_after), int(d.e.kernels)
	// Each delegated partition collapses into one kernel node.
	return before - (after - kernels), before, true
}
