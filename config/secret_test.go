package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// TestSecretCannotPrintItself: every way Go code prints, encodes or logs a
// value gives the redaction, alone or inside a config.
func TestSecretCannotPrintItself(t *testing.T) {
	const pw = "hunter2-Secret-77"
	s := NewSecret(pw)
	if s.Reveal() != pw || !s.IsSet() {
		t.Fatalf("Reveal = %q", s.Reveal())
	}
	r := &Redis{Addr: "h:1", Username: "u", Password: s}
	sasl := SASL{Mechanism: "plain", Username: "u", Password: s}
	var outs []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%10.3s", "%-8v", "%T %v"} {
		outs = append(outs, fmt.Sprintf(verb, s), fmt.Sprintf(verb, &s), fmt.Sprintf(verb, sasl))
	}
	outs = append(outs, fmt.Sprintf("%+v %#v %v", r, r, *r), fmt.Sprint(s, r), fmt.Sprintln(s, sasl), s.String(), s.GoString())
	y, err := yaml.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	j, err := json.Marshal(sasl)
	if err != nil {
		t.Fatal(err)
	}
	text, _ := s.MarshalText()
	outs = append(outs, string(y), string(j), string(text))
	var logs bytes.Buffer
	for _, h := range []slog.Handler{slog.NewTextHandler(&logs, nil), slog.NewJSONHandler(&logs, nil)} {
		l := slog.New(h)
		l.Info("connect", "password", s, "redis", r, "sasl", sasl, slog.Any("ptr", &s))
	}
	outs = append(outs, logs.String())
	all := strings.Join(outs, "\n")
	if strings.Contains(all, "hunter2") {
		t.Fatalf("the secret printed itself:\n%s", all)
	}
	for _, want := range []string{
		"password: <redacted>", `"Password":"<redacted>"`, `password=<redacted>`, `"password":"<redacted>"`,
		`config.Secret("<redacted>")`, `"<redacted>"`,
	} {
		if !strings.Contains(all, want) {
			t.Errorf("no %q in:\n%s", want, all)
		}
	}
	// Unset, it prints as nothing: the config shows that no password is set.
	var none Secret
	if got := fmt.Sprintf("%v|%q|%#v", none, none, none); got != `|""|config.Secret("")` {
		t.Fatalf("unset secret prints %s", got)
	}
	if y, _ := yaml.Marshal(Redis{}); !strings.Contains(string(y), `password: ""`) {
		t.Fatalf("unset: %s", y)
	}
}

// TestSecretDecodes: passwords are read like other values, ${VAR} included,
// a number as its text; a password that is not a scalar is refused without
// the value.
func TestSecretDecodes(t *testing.T) {
	y := `sinks:
  - type: kafka
    kafka: {brokers: [b:9092], topic: t, sasl: {mechanism: plain, username: u, password: "${PW}"}}
  - type: redis_stream
    redis_stream: {password: 12345}
dedupe:
  enabled: true
  store: redis
  redis: {password: "pre-${PW}-post"}
dlq:
  type: redis
  redis: {password: "$${literal}"}
`
	cfg, err := Decode([]byte(y), "c.yaml", env(map[string]string{"PW": "s3cr3t-Pw"}))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		got  Secret
		want string
	}{
		{cfg.Sinks[0].Kafka.SASL.Password, "s3cr3t-Pw"},
		{cfg.Sinks[1].RedisStream.Password, "12345"},
		{cfg.Dedupe.Redis.Password, "pre-s3cr3t-Pw-post"},
		{cfg.DLQ.Redis.Password, "${literal}"},
	} {
		if c.got.Reveal() != c.want {
			t.Errorf("password %q, want %q", c.got.Reveal(), c.want)
		}
	}
	_, err = Decode([]byte("sinks: [{type: redis_stream, redis_stream: {password: [a, hunter2]}}]\n"), "c.yaml", env(nil))
	if err == nil || strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), "c.yaml:1: a password must be a single value") {
		t.Fatalf("err = %v", err)
	}
}
