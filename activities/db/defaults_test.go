package db

import (
	"os"
	"strings"
	"testing"
)

// The password goes into the option file as one value, whatever it
// holds: a newline in it must not start another option.
func TestDefaultsFileKeepsThePasswordOneValue(t *testing.T) {
	priv := t.TempDir()
	d := Database{Driver: DriverMySQL, Host: "db", User: "u"}
	p, err := d.mysqlDefaultsFile(priv, "pw\nhost=elsewhere\r\n\\\"")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	want := []string{"[client]", `password="pw\nhost=elsewhere\r\n\\\""`, "skip-ssl"}
	if strings.Join(lines, "|") != strings.Join(want, "|") {
		t.Errorf("option file lines %q, want %q", lines, want)
	}
	if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("option file mode %v (%v), want 0600", fi.Mode(), err)
	}
}
