package cli

import (
	"context"
	"errors"

	"github.com/stagehand-dev/stagehand/activities"
	"github.com/stagehand-dev/stagehand/worker/config"
)

// workerView is what `runbooks` and `explain` know of a worker without
// connecting to anything: its config file (if given) and the runbooks
// directory it would load.
type workerView struct {
	// ConfigFile is the file read; "" when none was given.
	ConfigFile string
	Config     config.Config
	// RunbooksDir is the directory the worker would load runbooks from,
	// made absolute as the worker does; "" for none.
	RunbooksDir string
}

// loadWorkerView reads the worker config the way the worker does —
// --config (default $STAGEHAND_CONFIG), then its environment variables
// (STAGEHAND_RUNBOOKS_DIR, ...), then --runbooks-dir — and only reads: no
// connection, no file written.
func loadWorkerView(f *Factory, configFile, runbooksDir string) (*workerView, error) {
	if configFile == "" {
		configFile = f.Getenv("STAGEHAND_CONFIG")
	}
	v := &workerView{ConfigFile: configFile, Config: config.Defaults()}
	if configFile != "" {
		cfg, err := config.Load(configFile)
		if err != nil {
			return nil, usageError("%v", err)
		}
		v.Config = cfg
	}
	v.Config.ApplyEnv(f.Getenv)
	if runbooksDir != "" {
		v.Config.RunbooksDir = runbooksDir
	}
	v.RunbooksDir = v.Config.ResolvePath(v.Config.RunbooksDir)
	return v, nil
}

// specsCatalogue turns the step specs into the catalogue type the
// workflow's resolve takes. Its handlers refuse to run: explain resolves a
// run exactly as the worker would and then stops.
func specsCatalogue(specs *activities.Specs) (*activities.Catalogue, error) {
	refuse := func(context.Context, activities.StepRequest) (activities.StepResult, error) {
		return activities.StepResult{}, errors.New("stagehand explain runs no step")
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
