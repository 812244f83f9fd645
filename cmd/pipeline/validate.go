package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"

	"gopkg.in/yaml.v3"

	"github.com/tracepipe/tracepipe/app"
	"github.com/tracepipe/tracepipe/config"
)

// cmdValidate checks the config named by -c or by the one argument (the
// embedded one when neither is given) and prints its effective values.
// Passwords are config.Secret: they print as <redacted>.
func cmdValidate(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("validate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: pipeline validate [-q] [-c] [config.yaml]\n")
		fs.PrintDefaults()
	}
	cfgPath := fs.String("c", "", "config file (default: the embedded config.yaml)")
	quiet := fs.Bool("q", false, "print nothing when the config is valid")
	pos, err := parseArgs(fs, args, 0, 1)
	if err != nil {
		return usageError(stderr, err)
	}
	path := *cfgPath
	if len(pos) == 1 {
		if path != "" && filepath.Clean(path) != filepath.Clean(pos[0]) {
			return usageError(stderr, argError(fs, fmt.Errorf("validate: two configs given, -c %s and %s", path, pos[0])))
		}
		path = pos[0]
	}
	if path == "" && len(pos) == 0 && flagSet(fs, "c") {
		return usageError(stderr, argError(fs, errors.New("validate: -c names no file")))
	}
	cfg, err := config.Load(path)
	if err == nil {
		if _, perr := app.ParserOptions(cfg); perr != nil { // parser paths and units are checked there
			err = errors.New(cfg.HideExpanded(perr.Error()))
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "pipeline: invalid config: %v\n", err)
		return exitUsage
	}
	if *quiet {
		return exitOK
	}
	name := path
	if name == "" {
		name = "embedded config.yaml"
	}
	fmt.Fprintf(stdout, "# %s is valid; effective values (defaults filled in):\n", name)
	app.ShowParserDefaults(cfg)
	out, err := yaml.Marshal(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "pipeline: %v\n", err)
		return exitFailed
	}
	_, _ = stdout.Write(out)
	return exitOK
}

// flagSet reports whether the flag name was given on the command line.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}
