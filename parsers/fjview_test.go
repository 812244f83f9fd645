package parsers

import "testing"

func TestFastViewProbe(t *testing.T) {
	if !fastView {
		t.Errorf("the fastjson layout mirror does not match the fastjson in the build: decoding runs on the slower public API")
	}
}

// TestWithoutFastView runs the conformance, golden and table tests with
// every read going through fastjson's public API.
func TestWithoutFastView(t *testing.T) {
	saved := fastView
	fastView = false
	defer func() { fastView = saved }()
	for name, test := range map[string]func(*testing.T){
		"Golden":            TestGolden,
		"JSONTestSuite":     TestJSONTestSuiteDecode,
		"Strict":            TestJSONTestSuiteStrict,
		"SuiteInsideObject": TestSuiteInsideObject,
		"Escapes":           TestEscapesDecoded,
		"Replace":           TestInvalidUTF8Replace,
		"MalformedCodes":    TestMalformedCodes,
		"Paths":             TestJSONLPaths,
		"OTLPShapes":        TestOTLPShapes,
		"Typical":           TestTypicalUnitsDecode,
		"DecodeAllocs":      TestDecodeAllocs,
	} {
		t.Run(name, test)
	}
}
