//go:build race

package mqtt

// raceEnabled is true when the tests run under the race detector.
const raceEnabled = true
