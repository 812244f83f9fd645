package parsers

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tracepipe/tracepipe/pipeline"
)

// TestLayoutTableInREADME keeps the README's layout table equal to the
// code's (layoutTable).
func TestLayoutTableInREADME(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	if want := layoutMarkdown(); !strings.Contains(string(readme), want) {
		t.Errorf("README.md does not hold the layout table as layouts.go has it; paste this:\n%s", want)
	}
}

// TestLayoutRules checks the rules of layouts.go one by one, each line
// through both paths (spCompare) and then for its record.
func TestLayoutRules(t *testing.T) {
	const tr = `"trace_id":"5b8efff798038103d269b633813fc60c"`
	cases := []struct {
		line string
		want string // a line of renderBatch's output that must be there
	}{
		{`{` + tr + `,"attributes":{"user.id":"u1"}}`, `attr "user.id" string "u1"`},
		{`{` + tr + `,"attributes":{"user":{"id":"u1"}}}`, `attr "user.id" string "u1"`},
		{`{` + tr + `,"attributes.user.id":"u1"}`, `attr "user.id" string "u1"`},
		{`{` + tr + `,"user":{"id":"u1"}}`, `attr "user.id" string "u1"`},
		{`{` + tr + `,"labels":{"env":"prod"}}`, `attr "env" string "prod"`},
		{`{` + tr + `,"attributes":{}}`, `attr "attributes" json "{}"`},
		{`{` + tr + `,"attributes":"x"}`, `attr "attributes" string "x"`},
		{`{` + tr + `,"resource":{"attributes":{"host.name":"h"}}}`, `attr "resource.host.name" string "h"`},
		{`{` + tr + `,"resource":{"attributes.host.name":"h"}}`, `attr "resource.host.name" string "h"`},
		{`{` + tr + `,"resource.attributes.host.name":"h"}`, `attr "resource.host.name" string "h"`},
		{`{` + tr + `,"Resource":{"host.name":"h"}}`, `attr "resource.host.name" string "h"`},
		{`{` + tr + `,"resource":{"attributes":{"service.name":"s"}}}`, `  service "s"`},
		{`{` + tr + `,"span_id":"eee19b7ec3c1b174","start_time_unix_nano":1000000000000000000,"end_time_unix_nano":1000000000000000500}`, `span time=1000000000000000000 duration=500`},
		{`{` + tr + `,"span_id":"eee19b7ec3c1b174","startTime":"2024-06-10T06:13:20Z","endTime":"2024-06-10T06:13:21Z"}`, `span time=1718000000000000000 duration=1000000000`},
		{`{` + tr + `,"start":1718000000,"end":1718000001}`, `log time=1718000000000000000 duration=1000000000`},
		{`{` + tr + `,"time":1718000005,"start":1718000000}`, `attr "start" number "1718000000"`},
		{`{` + tr + `,"start":{"a":1},"end":true}`, `attr "start.a" number "1"`},
		{`{` + tr + `,"span_id":"eee19b7ec3c1b174","start":1718000001,"end":1718000000}`, `failure parse invalid bad_duration "end time is before start time"`},
		{`{` + tr + `,"start":"soon","end":1718000000}`, `failure parse invalid bad_timestamp "start time is neither a Unix time nor RFC 3339"`},
		{`{` + tr + `,"status":{"code":"STATUS_CODE_ERROR","message":"m"}}`, `  status "error"`},
		{`{` + tr + `,"status":{"code":1}}`, `  status "ok"`},
		{`{` + tr + `,"status":"Unset"}`, `  status "unset"`},
		{`{` + tr + `,"status":200}`, `attr "status" number "200"`},
		{`{` + tr + `,"severity_number":17}`, `  severity "ERROR"`},
		{`{` + tr + `,"severityNumber":"22"}`, `  severity "FATAL2"`},
		{`{` + tr + `,"severity_number":99}`, `  severity "99"`},
		{`{` + tr + `,"severity_text":"Warning","severity_number":13}`, `  severity "Warning"`},
		{`{"dd.trace_id":"1234567890123456789","dd.span_id":"987654321"}`, `  trace_id "0000000000000000112210f47de98115"`},
		{`{"dd.trace_id":"1234567890123456789","dd.span_id":"987654321"}`, `  span_id "000000003ade68b1"`},
		{`{"dd":{"trace_id":18446744073709551615}}`, `  trace_id "0000000000000000ffffffffffffffff"`},
		{`{"dd.trace_id":"5B8EFFF798038103D269B633813FC60C"}`, `  trace_id "5b8efff798038103d269b633813fc60c"`},
		{`{"dd.trace_id":"18446744073709551616"}`, `failure parse invalid bad_id "trace id is not a decimal 64-bit id or 32 hex digits"`},
		{`{"dd.trace_id":"0",` + tr + `}`, `  trace_id "5b8efff798038103d269b633813fc60c"`},
		{`{"dd.trace_id":true}`, `failure parse invalid wrong_type`},
	}
	for _, c := range cases {
		spCompare(t, []byte(c.line))
		b := decodeUnit(t, nil, []byte(c.line), pipeline.FormatJSONL)
		if got := string(renderBatch(b)); !strings.Contains(got, c.want) {
			t.Errorf("%s:\n%s\nwant a line holding %q", c.line, got, c.want)
		}
	}
}
