package main

import "testing"

func TestParseTruth(t *testing.T) {
	tests := []struct {
		name   string
		task   string
		want   string
		wantOK bool
	}{
		{"angry/Training_10118481.jpg", "emotion", "angry", true},
		{"val/Happy/PublicTest_1.jpg", "emotion", "happy", true},
		{"26_1_2_20170103181524137.jpg.chip.jpg", "gender", "female", true},
		{"26_0_2_20170103181524137.jpg.chip.jpg", "gender", "male", true},
		{"26_1_2_20170103181524137.jpg.chip.jpg", "age", "20-39", true},
		{"19_1_2_20170103181524137.jpg.chip.jpg", "age", "0-19", true},
		{"80_1_2_20170103181524137.jpg.chip.jpg", "age", "80+", true},
		{"116_1_0_20170103181524137.jpg.chip.jpg", "age", "80+", true},
		{"some/dir/60_0_4_2017.jpg", "age", "60-79", true},
		{"loose.jpg", "emotion", "", false},
	}
	for _, tt := range tests {
		tr, ok := parseTruth(tt.name)
		if ok != tt.wantOK {
			t.Errorf("parseTruth(%q) ok = %v, want %v", tt.name, ok, tt.wantOK)
			continue
		}
		if !ok {
			continue
		}
		got, err := tr.label(tt.task)
		if err != nil || got != tt.want {
			t.Errorf("parseTruth(%q).label(%s) = %q, %v; want %q", tt.name, tt.task, got, err, tt.want)
		}
	}
	if tr, _ := parseTruth("26_1_2_2017.jpg.chip.jpg"); tr.race != 2 {
		t.Errorf("race = %d, want 2", tr.race)
	}
	if tr, _ := parseTruth("26_1_2_2017.jpg.chip.jpg"); func() error { _, err := tr.label("emotion"); return err }() == nil {
		t.Error("UTKFace name gave an emotion label")
	}
}
