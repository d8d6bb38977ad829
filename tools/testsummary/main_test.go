package main

import (
	"strings"
	"testing"
)

func TestSummarize(t *testing.T) {
	tests := []struct {
		name     string
		input    string
		wantCode int
		wantLast string
		want     []string // substrings of the report
		notWant  []string
	}{
		{
			name: "all pass",
			input: `{"Action":"run","Package":"p","Test":"TestA"}
{"Action":"output","Package":"p","Test":"TestA","Output":"noise from a passing test\n"}
{"Action":"pass","Package":"p","Test":"TestA","Elapsed":0.1}
{"Action":"run","Package":"p","Test":"TestB"}
{"Action":"skip","Package":"p","Test":"TestB"}
{"Action":"pass","Package":"p","Elapsed":0.2}
{"Action":"skip","Package":"q"}
`,
			wantCode: 0,
			wantLast: "1 passed, 0 failed, 1 skipped",
			want:     []string{"ok    p (0.2s)", "skipped:\n  p TestB"},
			notWant:  []string{"noise from a passing test"},
		},
		{
			name: "failing test and subtest with output",
			input: `{"Action":"run","Package":"p","Test":"TestA"}
{"Action":"output","Package":"p","Test":"TestA/sub","Output":"    a_test.go:9: got 1, want 2\n"}
{"Action":"fail","Package":"p","Test":"TestA/sub"}
{"Action":"fail","Package":"p","Test":"TestA"}
{"Action":"pass","Package":"p","Test":"TestB"}
{"Action":"fail","Package":"p","Elapsed":1}
`,
			wantCode: 1,
			wantLast: "1 passed, 2 failed, 0 skipped",
			want:     []string{"=== FAILED: p TestA/sub\n    a_test.go:9: got 1, want 2", "FAIL  p (1.0s)", "failed tests:\n  p TestA/sub\n  p TestA"},
			notWant:  []string{"PACKAGE FAILED"},
		},
		{
			name: "package fails outside tests",
			input: `{"Action":"output","Package":"p","Output":"panic: test timed out after 20m0s\n"}
{"Action":"fail","Package":"p","Elapsed":1200}
`,
			wantCode: 1,
			wantLast: "0 passed, 0 failed, 0 skipped",
			want:     []string{"=== PACKAGE FAILED: p\npanic: test timed out", "1 packages failed outside any test"},
		},
		{
			name: "build failure",
			input: `{"ImportPath":"p [p.test]","Action":"build-output","Output":"# p\n./a.go:3:1: syntax error\n"}
{"ImportPath":"p [p.test]","Action":"build-fail"}
{"Action":"start","Package":"p"}
{"Action":"output","Package":"p","Output":"FAIL\tp [build failed]\n"}
{"Action":"fail","Package":"p","Elapsed":0,"FailedBuild":"p [p.test]"}
`,
			wantCode: 1,
			want:     []string{"=== BUILD FAILED: p [p.test]\n# p\n./a.go:3:1: syntax error", "1 packages failed to build"},
			notWant:  []string{"PACKAGE FAILED", "outside any test"},
		},
		{
			name:     "non-JSON lines pass through",
			input:    "go: downloading example.com/x v1.0.0\n{\"Action\":\"pass\",\"Package\":\"p\",\"Test\":\"T\"}\n",
			wantCode: 0,
			want:     []string{"go: downloading example.com/x v1.0.0"},
		},
		{
			name:     "no events is a failure",
			input:    "go: cannot find main module\n",
			wantCode: 1,
			want:     []string{"no test events"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out strings.Builder
			code := summarize(strings.NewReader(tt.input), &out)
			got := out.String()
			if code != tt.wantCode {
				t.Errorf("exit code %d, want %d\n%s", code, tt.wantCode, got)
			}
			if tt.wantLast != "" {
				lines := strings.Split(strings.TrimRight(got, "\n"), "\n")
				if last := lines[len(lines)-1]; last != tt.wantLast {
					t.Errorf("last line %q, want %q", last, tt.wantLast)
				}
			}
			for _, s := range tt.want {
				if !strings.Contains(got, s) {
					t.Errorf("report lacks %q:\n%s", s, got)
				}
			}
			for _, s := range tt.notWant {
				if strings.Contains(got, s) {
					t.Errorf("report should not contain %q:\n%s", s, got)
				}
			}
		})
	}
}
