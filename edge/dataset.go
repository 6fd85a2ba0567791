package main

import (
	"fmt"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// Ground truth comes from the names inside a data set, laid out like ../shared/data:
// FER-style "<class>/<file>" entries, or UTKFace-style "[age]_[gender]_[race]_…jpg".

var (
	ageLabels    = []string{"0-19", "20-39", "40-59", "60-79", "80+"}
	genderLabels = []string{"female", "male"}
	raceLabels   = []string{"white", "black", "asian", "indian", "others"}
	utkName      = regexp.MustCompile(`^([0-9]+)_([01])_([0-4])_`)
)

// truth is what a sample's name says about the person in it.
type truth struct {
	class string // FER-style class directory, or "" for UTKFace names
	utk   bool
	age   int
	// gender and race index genderLabels and raceLabels.
	gender, race int
}

// parseTruth reads the labels from a data set entry name.
func parseTruth(name string) (truth, bool) {
	name = filepath.ToSlash(name)
	if m := utkName.FindStringSubmatch(path.Base(name)); m != nil {
		age, _ := strconv.Atoi(m[1])
		g, _ := strconv.Atoi(m[2])
		r, _ := strconv.Atoi(m[3])
		// UTKFace codes 0 = male, 1 = female.
		return truth{utk: true, age: age, gender: 1 - g, race: r}, true
	}
	if dir := path.Dir(name); dir != "." && dir != "/" {
		return truth{class: strings.ToLower(path.Base(dir))}, true
	}
	return truth{}, false
}

// ageCategory maps an age in years to its index in ageLabels.
func ageCategory(age int) int {
	return min(max(age, 0)/20, len(ageLabels)-1)
}

// label is the class name the task's model should predict for this sample.
func (t truth) label(task string) (string, error) {
	if !t.utk {
		if task != "emotion" && t.class == "" {
			return "", fmt.Errorf("no %s label", task)
		}
		return t.class, nil
	}
	switch task {
	case "age":
		return ageLabels[ageCategory(t.age)], nil
	case "gender":
		return genderLabels[t.gender], nil
	}
	return "", fmt.Errorf("UTKFace names carry no %s label", task)
}
