package main

import (
	"flag"
	"fmt"
	"io"

	"gopkg.in/yaml.v3"

	"github.com/tracepipe/tracepipe/config"
	"github.com/tracepipe/tracepipe/pipeline/replay"
)

func cmdValidate(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("validate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("c", "", "config file (default: the embedded config.yaml)")
	quiet := fs.Bool("q", false, "print nothing when the config is valid")
	if _, err := parseInterspersed(fs, args); err != nil {
		return usageError(stderr, err)
	}
	cfg, err := config.Load(*cfgPath)
	if err == nil {
		_, err = replay.ParserOptions(cfg) // parser paths and units are checked there
	}
	if err != nil {
		fmt.Fprintf(stderr, "pipeline: invalid config: %v\n", err)
		return exitUsage
	}
	if *quiet {
		return exitOK
	}
	name := *cfgPath
	if name == "" {
		name = "embedded config.yaml"
	}
	fmt.Fprintf(stdout, "# %s is valid; effective values (defaults filled in):\n", name)
	replay.ShowParserDefaults(cfg)
	out, err := yaml.Marshal(redacted(cfg))
	if err != nil {
		fmt.Fprintf(stderr, "pipeline: %v\n", err)
		return exitFailed
	}
	_, _ = stdout.Write(out)
	return exitOK
}

// redacted returns a copy of cfg with every password replaced, for
// printing.
func redacted(cfg *config.Config) *config.Config {
	c := *cfg
	hide := func(p *string) {
		if *p != "" {
			*p = "<redacted>"
		}
	}
	if r := c.Windows.Sink.Redis; r != nil {
		cp := *r
		hide(&cp.Password)
		c.Windows.Sink.Redis = &cp
	}
	c.Sinks = append([]config.Sink(nil), cfg.Sinks...)
	for i := range c.Sinks {
		s := &c.Sinks[i]
		if s.Kafka != nil {
			k := *s.Kafka
			if k.SASL != nil {
				a := *k.SASL
				hide(&a.Password)
				k.SASL = &a
			}
			s.Kafka = &k
		}
		if s.RedisStream != nil {
			r := *s.RedisStream
			hide(&r.Password)
			s.RedisStream = &r
		}
	}
	if r := c.DLQ.Redis; r != nil {
		cp := *r
		hide(&cp.Password)
		c.DLQ.Redis = &cp
	}
	if k := c.DLQ.Kafka; k != nil {
		cp := *k
		if cp.SASL != nil {
			a := *cp.SASL
			hide(&a.Password)
			cp.SASL = &a
		}
		c.DLQ.Kafka = &cp
	}
	return &c
}
