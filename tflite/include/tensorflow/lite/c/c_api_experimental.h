/* Declarations of the experimental TFLite C API calls that go-tflite uses.
 * The prebuilt libtensorflowlite_c.so 2.9.0 (npm tfjs-tflite-node@0.0.2)
 * exports these symbols but ships no header for them. */
#ifndef EDGE_TFLITE_C_API_EXPERIMENTAL_H_
#define EDGE_TFLITE_C_API_EXPERIMENTAL_H_

#include "tensorflow/lite/c/c_api.h"
#include "tensorflow/lite/c/common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef int TfLiteBuiltinOperator;

TFL_CAPI_EXPORT extern TfLiteStatus TfLiteInterpreterResetVariableTensors(
    TfLiteInterpreter* interpreter);

TFL_CAPI_EXPORT void TfLiteInterpreterOptionsAddBuiltinOp(
    TfLiteInterpreterOptions* options, TfLiteBuiltinOperator op,
    const TfLiteRegistration* registration, int32_t min_version,
    int32_t max_version);

TFL_CAPI_EXPORT void TfLiteInterpreterOptionsAddCustomOp(
    TfLiteInterpreterOptions* options, const char* name,
    const TfLiteRegistration* registration, int32_t min_version,
    int32_t max_version);

TFL_CAPI_EXPORT extern void TfLiteInterpreterOptionsSetUseNNAPI(
    TfLiteInterpreterOptions* options, bool enable);

#ifdef __cplusplus
}
#endif

#endif
