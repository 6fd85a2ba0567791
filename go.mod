module github.com/edge-sensor/edge

go 1.26.8

require (
	github.com/esimov/pigo v1.4.6 // indirect
	github.com/mattn/go-pointer v0.0.1 // indirect
	github.com/mattn/go-tflite v1.0.7 // indirect
	github.com/vladimirvivien/go4vl v0.3.0 // indirect
)
