// Package pipeline is the frame flow of the sensor: face detection, tracking, classification and aggregation.
//
// A frame's luma plane goes through the [Detector] (pigo), the detections
// through the [Tracker] (which turns per-frame boxes into people with stable
// IDs), confirmed people through the [Labeler] (which levels each face with
// [Detector.Level], crops it with [Crop] and runs the enabled classifiers on
// it every few frames, keeping a running mean of the probabilities per
// person) and finally into the
// [Aggregator], which turns everything into one privacy-preserving stats
// window ([mqtt.Stats]) per publish interval. [Pipeline] wires the stages to
// a frame [Source] and a [Sink].
//
// Privacy is a design constraint, not a feature: no frame, crop or face
// embedding is stored, people are never re-identified (a person who leaves and
// comes back is a new person), and label breakdowns that could single out
// fewer than MinGroup people are withheld (see [AggregatorConfig.MinGroup]).
//
// The stages are meant to run on one goroutine (the pipeline's processing
// goroutine); none of the stage types is safe for concurrent use.
package pipeline
