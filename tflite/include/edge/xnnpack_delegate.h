/* Declarations of the XNNPACK delegate calls exported by the prebuilt
 * libtensorflowlite_c.so 2.9.0 (npm tfjs-tflite-node@0.0.2), which ships no
 * header for them.
 *
 * The options struct is written from the binary, not from the upstream
 * header: in this build it is 8 bytes, {int32 num_threads; uint32 flags}.
 * The upstream 2.9.1 header adds a weights_cache pointer that this library
 * neither reads nor zeroes, so using that header would be wrong. */
#ifndef EDGE_XNNPACK_DELEGATE_H_
#define EDGE_XNNPACK_DELEGATE_H_

#include <stdint.h>

#include "tensorflow/lite/c/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Lets XNNPACK take signed 8-bit quantized (QS8) operators. Without it the
 * delegate takes no node of a full-integer int8 model. */
#define EDGE_XNNPACK_FLAG_QS8 0x00000001u

typedef struct EdgeXNNPackDelegateOptions {
  int32_t num_threads;
  uint32_t flags;
} EdgeXNNPackDelegateOptions;

/* Upstream names, edge's struct: the symbols take the struct by value or by
 * pointer exactly as below. */
EdgeXNNPackDelegateOptions TfLiteXNNPackDelegateOptionsDefault(void);
TfLiteDelegate* TfLiteXNNPackDelegateCreate(
    const EdgeXNNPackDelegateOptions* options);
void TfLiteXNNPackDelegateDelete(TfLiteDelegate* delegate);

#ifdef __cplusplus
}
#endif

#endif /* EDGE_XNNPACK_DELEGATE_H_ */
