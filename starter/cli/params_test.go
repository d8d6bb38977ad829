package cli

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseParamFlags(t *testing.T) {
	tests := []struct {
		name    string
		flags   []string
		want    map[string]any
		wantErr string
	}{
		{name: "none", flags: nil, want: map[string]any{}},
		{name: "simple", flags: []string{"image=reg/app:pr-1", "pr=42"}, want: map[string]any{"image": "reg/app:pr-1", "pr": "42"}},
		{name: "equals in value", flags: []string{"k=v=with=equals"}, want: map[string]any{"k": "v=with=equals"}},
		{name: "empty value", flags: []string{"comment="}, want: map[string]any{"comment": ""}},
		{name: "last wins", flags: []string{"a=1", "a=2"}, want: map[string]any{"a": "2"}},
		{name: "no equals", flags: []string{"image"}, wantErr: `invalid --param "image": want KEY=VALUE`},
		{name: "empty key", flags: []string{"=v"}, wantErr: `invalid --param "=v"`},
		{name: "space in key", flags: []string{"a b=c"}, wantErr: `invalid --param "a b=c"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseParamFlags(tt.flags)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				if ExitCode(err) != ExitUsage {
					t.Errorf("exit code %d, want %d", ExitCode(err), ExitUsage)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestParamsFileMerging(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name    string
		file    string
		stdin   string
		flags   []string
		want    map[string]any
		wantErr string
	}{
		{
			name:  "yaml, flags win",
			file:  write("p.yaml", "image: reg/app:prod-1\npr: 42\ndryRun: true\n"),
			flags: []string{"image=reg/app:pr-7"},
			want:  map[string]any{"image": "reg/app:pr-7", "pr": 42, "dryRun": true},
		},
		{
			name: "json keeps types",
			file: write("p.json", `{"pr": 42, "environment": "sandbox"}`),
			want: map[string]any{"pr": 42, "environment": "sandbox"},
		},
		{
			name:  "stdin",
			file:  "-",
			stdin: "environment: prod\n",
			flags: []string{"pr=1"},
			want:  map[string]any{"environment": "prod", "pr": "1"},
		},
		{name: "empty file", file: write("empty.yaml", ""), want: map[string]any{}},
		{name: "not a mapping", file: write("list.yaml", "- a\n- b\n"), wantErr: "want a YAML or JSON mapping"},
		{name: "missing", file: filepath.Join(dir, "nope.yaml"), wantErr: "read --params-file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fileParams, err := readParamsFile(tt.file, strings.NewReader(tt.stdin))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || ExitCode(err) != ExitUsage {
					t.Fatalf("err = %v (exit %d), want %q and exit 2", err, ExitCode(err), tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			flagParams, err := parseParamFlags(tt.flags)
			if err != nil {
				t.Fatal(err)
			}
			if got := mergeParams(fileParams, flagParams); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %#v, want %#v", got, tt.want)
			}
		})
	}
}
