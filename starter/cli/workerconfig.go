package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/stagehand-dev/stagehand/activities"
	"github.com/stagehand-dev/stagehand/worker/environment"
	"github.com/stagehand-dev/stagehand/workflows"
)

// workerFile is the part of the worker's config file (worker/config) that
// `runbooks` and `explain` read. It is decoded here rather than through
// worker/config because that package links the database drivers, which
// the CLI must not (activities/steps' TestSpecsLinkNoClientLibrary); the
// environments are worker/environment's, the worker's own type.
// TestWorkerFileMatchesWorkerConfig keeps the rest in step.
type workerFile struct {
	RunbooksDir  string                             `yaml:"runbooksDir"`
	Environments map[string]environment.Environment `yaml:"environments"`
	Settings     map[string]any                     `yaml:"settings"`
	Approvals    workflows.ApprovalPolicy           `yaml:"approvals"`
}

// workerView is what `runbooks` and `explain` know of a worker without
// connecting to anything: its config file (if given) and the runbooks
// directory it would load.
type workerView struct {
	// ConfigFile is the file read; "" when none was given.
	ConfigFile string
	File       workerFile
	// RunbooksDir is the directory the worker would load runbooks from,
	// made absolute as the worker does; "" for none.
	RunbooksDir string
}

// loadWorkerView reads the worker config the way the worker does —
// --config (default $STAGEHAND_CONFIG), then STAGEHAND_RUNBOOKS_DIR, then
// --runbooks-dir — and only reads: no connection, no file written.
func loadWorkerView(f *Factory, configFile, runbooksDir string) (*workerView, error) {
	if configFile == "" {
		configFile = f.Getenv("STAGEHAND_CONFIG")
	}
	v := &workerView{ConfigFile: configFile}
	if configFile != "" {
		data, err := os.ReadFile(configFile)
		if err != nil {
			return nil, usageError("read config: %v", err)
		}
		// Not strict about unknown keys: the file holds much the CLI does
		// not read (the worker itself rejects typos).
		if err := yaml.NewDecoder(bytes.NewReader(data)).Decode(&v.File); err != nil && !errors.Is(err, io.EOF) {
			return nil, usageError("config %s: %v", configFile, err)
		}
	}
	if d := f.Getenv("STAGEHAND_RUNBOOKS_DIR"); d != "" {
		v.File.RunbooksDir = d
	}
	if runbooksDir != "" {
		v.File.RunbooksDir = runbooksDir
	}
	v.RunbooksDir = resolvePath(v.File.RunbooksDir)
	return v, nil
}

// resolvePath makes a path absolute as the worker's config does: "~" is the
// home directory, relative paths are relative to the working directory.
func resolvePath(p string) string {
	if p == "" {
		return ""
	}
	if p == "~" || strings.HasPrefix(p, "~/") {
		if home, err := os.UserHomeDir(); err == nil {
			p = filepath.Join(home, strings.TrimPrefix(p, "~"))
		}
	}
	if abs, err := filepath.Abs(p); err == nil {
		return abs
	}
	return p
}

// TemplateData is what runbooks see as .environments, built by the
// worker's own code.
func (w *workerFile) TemplateData() map[string]any {
	return environment.TemplateData(w.Environments)
}

// SettingsData is what runbooks see as .settings.
func (w *workerFile) SettingsData() map[string]any {
	if w.Settings == nil {
		return map[string]any{}
	}
	return w.Settings
}

// specsCatalogue turns the step specs into the catalogue type the
// workflow's resolve takes. Its handlers refuse to run: explain resolves a
// run exactly as the worker would and then stops.
func specsCatalogue(specs *activities.Specs) (*activities.Catalogue, error) {
	refuse := func(context.Context, activities.StepRequest) (activities.StepResult, error) {
		return activities.StepResult{}, fmt.Errorf("stagehand explain runs no step")
	}
	var types []activities.StepType
	for _, sp := range specs.All() {
		t := activities.StepType{StepSpec: sp}
		if !sp.Native {
			t.Handler = refuse
		}
		types = append(types, t)
	}
	return activities.NewCatalogue(types...)
}
