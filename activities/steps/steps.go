// Package steps describes every built-in step type as data: its arguments
// with their types and help, its outputs, the error types it may fail with,
// its default timeouts and whether the workflow runs it itself. It holds no
// implementation and imports no client library, so the CLI can validate and
// document runbooks (`stagehand validate`, `runbooks`, `explain`) without
// linking client-go or go-github. Each adapter package binds its handlers
// to these specs by name (activities.Implement), and activities.Bind checks
// at worker start that every spec has a handler whose Go input and output
// agree with it.
package steps

import (
	"fmt"

	"github.com/stagehand-dev/stagehand/activities"
)

// All returns every built-in step spec, in no particular order.
func All() []activities.StepSpec {
	var out []activities.StepSpec
	for _, group := range [][]activities.StepSpec{generic, kube, flux, git, web, notify, command, image, db, portal, server} {
		out = append(out, group...)
	}
	return out
}

// Catalogue returns the built-in specs as a set that validates runbooks.
func Catalogue() (*activities.Specs, error) {
	return activities.NewSpecs(All()...)
}

// Spec returns the built-in spec with that name. It panics when there is
// none: adapters call it with literal names while building their step
// types, and a typo there is a programming error that every test catches.
func Spec(name string) activities.StepSpec {
	for _, s := range All() {
		if s.Name == name {
			return s
		}
	}
	panic(fmt.Sprintf("steps: no built-in step type %q", name))
}

// Argument and output types, as runbook authors see them.
const (
	TString   = "string"
	TInt      = "int"
	TBool     = "bool"
	TDuration = "duration"
	TTime     = "time"
	TList     = "list"
	TMap      = "map"
	TAny      = "any"
)

func arg(name, typ, help string) activities.Arg {
	return activities.Arg{Name: name, Type: typ, Help: help}
}

func req(name, typ, help string) activities.Arg {
	return activities.Arg{Name: name, Type: typ, Required: true, Help: help}
}

func out(name, typ, help string) activities.Output {
	return activities.Output{Name: name, Type: typ, Help: help}
}

func errs(groups ...[]string) []string {
	var out []string
	for _, g := range groups {
		out = append(out, g...)
	}
	return out
}
