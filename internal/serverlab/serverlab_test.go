package serverlab

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/stagehand-dev/stagehand/internal/localenv"
	"github.com/stagehand-dev/stagehand/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

const readyTimeout = 3 * time.Minute

// psql runs one query on a database of the lab's server and returns its
// unaligned output.
func psql(t *testing.T, l *Lab, database, query string) string {
	t.Helper()
	out, err := exec.Command("psql", "-X", "-At", "-v", "ON_ERROR_STOP=1", l.PG.DSN(database), "-c", query).CombinedOutput()
	require.NoError(t, err, "psql %s: %s", query, out)
	return strings.TrimSpace(string(out))
}

func migrations(t *testing.T, l *Lab, database string) (count, batches int) {
	t.Helper()
	fields := strings.Split(psql(t, l, database, "SELECT count(*), count(DISTINCT batch) FROM knex_migrations"), "|")
	require.Len(t, fields, 2)
	count, _ = strconv.Atoi(fields[0])
	batches, _ = strconv.Atoi(fields[1])
	return count, batches
}

// runCommand runs one of the lab's worker commands as exec.run would (its
// argv plus the run's arguments, in its first directory).
func runCommand(t *testing.T, l *Lab, name string, args ...string) {
	t.Helper()
	c, ok := l.Commands()[name]
	require.True(t, ok, "command %s", name)
	ctx, cancel := context.WithTimeout(context.Background(), c.Timeout+time.Minute)
	defer cancel()
	begin := time.Now()
	cmd := exec.CommandContext(ctx, c.Argv[0], append(append([]string(nil), c.Argv[1:]...), args...)...)
	cmd.Dir = c.Dirs[0]
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s %v: %s", name, args, localenv.Tail(out, 4000))
	t.Logf("%s %s: %s", name, strings.Join(args, " "), time.Since(begin).Round(time.Millisecond))
}

func startReady(t *testing.T, l *Lab) *Server {
	t.Helper()
	begin := time.Now()
	s := l.Start(t)
	require.NoError(t, s.WaitReady(context.Background(), readyTimeout))
	t.Logf("backend ready in %s", time.Since(begin).Round(time.Millisecond))
	return s
}

func TestReleases(t *testing.T) {
	byVersion := map[string]map[string]string{}
	for _, m := range Releases() {
		pkgs := map[string]string{}
		for _, p := range m.Packages {
			pkgs[p.Name] = p.Version
		}
		byVersion[m.ReleaseVersion] = pkgs
	}
	require.Equal(t, "3.9.1", byVersion[FromRelease]["@backstage/plugin-catalog-backend"])
	require.Equal(t, "4.0.0", byVersion[ToRelease]["@backstage/plugin-catalog-backend"])
	// The failing release differs from the good one only by its number:
	// the fault is the template's, keyed on backstage.json.
	require.Equal(t, byVersion[ToRelease], byVersion[FailRelease])
	fault, err := os.ReadFile(filepath.Join("..", "..", "tools", "backstage-server", "plugins",
		"catalog-backend-module-release-fault", "src", "index.js"))
	require.NoError(t, err)
	require.Contains(t, string(fault), "const FAULTY_RELEASES = ['"+FailRelease+"'];")
	require.Contains(t, string(fault), "Backend failed to start up: Stagehand test fault")
}

func TestCheckPrepared(t *testing.T) {
	tmpl, prepared := t.TempDir(), t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(tmpl, "package-lock.json"), []byte("{}"), 0o644))
	err := CheckPrepared(tmpl, prepared)
	require.ErrorContains(t, err, "make backstage-server-tools")
	require.NoError(t, os.MkdirAll(filepath.Join(prepared, "portal", "node_modules"), 0o755))
	stamp := filepath.Join(prepared, "portal", "node_modules", ".stagehand-stamp")
	// sha256("{}")
	sum := "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
	require.NoError(t, os.WriteFile(stamp, []byte("0000 node20 "+strings.Join(PluginPackages, ",")+"\n"), 0o644))
	require.ErrorContains(t, CheckPrepared(tmpl, prepared), "different package-lock.json")
	require.NoError(t, os.WriteFile(stamp, []byte(sum+" node20 "+"@backstage/plugin-search-backend@0.0.1\n"), 0o644))
	require.ErrorContains(t, CheckPrepared(tmpl, prepared), "primed the npm cache")
	require.NoError(t, os.WriteFile(stamp, []byte(sum+" node20 "+strings.Join(PluginPackages, ",")+"\n"), 0o644))
	require.NoError(t, CheckPrepared(tmpl, prepared))
}

// The stand-in build translates the stock index and refuses what it does
// not understand, with the file and line.
func TestBuildScript(t *testing.T) {
	localenv.SkipIfShort(t, "node")
	root, err := localenv.RepoRoot()
	require.NoError(t, err)
	tmpl := filepath.Join(root, "tools", "backstage-server")
	build := func(t *testing.T, index string) (string, error) {
		dir := t.TempDir()
		require.NoError(t, os.MkdirAll(filepath.Join(dir, "scripts"), 0o755))
		require.NoError(t, os.MkdirAll(filepath.Join(dir, "packages", "backend", "src"), 0o755))
		script, err := os.ReadFile(filepath.Join(tmpl, "scripts", "build.js"))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, "scripts", "build.js"), script, 0o644))
		require.NoError(t, os.WriteFile(filepath.Join(dir, "packages", "backend", "src", "index.ts"), []byte(index), 0o644))
		out, err := exec.Command("node", filepath.Join(dir, "scripts", "build.js")).CombinedOutput()
		if err != nil {
			return string(out), err
		}
		js, rerr := os.ReadFile(filepath.Join(dir, "packages", "backend", "dist", "index.js"))
		require.NoError(t, rerr)
		return string(js), nil
	}
	stock, err := os.ReadFile(filepath.Join(tmpl, "packages", "backend", "src", "index.ts"))
	require.NoError(t, err)
	js, err := build(t, string(stock))
	require.NoError(t, err, js)
	require.Contains(t, js, "const { createBackend } = require('@backstage/backend-defaults');")
	require.Contains(t, js, "backend.add(Promise.resolve().then(() => require('@backstage/plugin-catalog-backend')));")
	require.NotContains(t, js, "import")
	require.Equal(t, strings.Count(string(stock), "\n"), strings.Count(js, "\n"), "lines keep their numbers")

	js, err = build(t, "import {\n  a,\n  b as c,\n} from 'x';\n// import('not code')\nconst s = \"import('y')\";\nbackend.add(import(\"z\"));\n")
	require.NoError(t, err, js)
	require.Equal(t, "'use strict';const { a, b: c } = require('x');\n\n\n\n// import('not code')\nconst s = \"import('y')\";\nbackend.add(Promise.resolve().then(() => require(\"z\")));\n", js)

	for _, tc := range []struct{ src, want string }{
		{"import x from 'x';\n", "index.ts:1: unsupported import form"},
		{"import * as x from 'x';\n", "index.ts:1: unsupported import form"},
		{"import { type A } from 'x';\n", "index.ts:1: unsupported import specifier"},
		{"\nexport default 1;\n", "index.ts:2: unsupported TypeScript/ESM syntax \"export\""},
		{"const a = 1;\n\nconst b: string = 'x';\n", "index.ts:3: not JavaScript after translation"},
		{"\n\ninterface A { a: string }\n", "index.ts:3: unsupported TypeScript/ESM syntax \"interface\""},
		{"const b = f<string>(1);\n", "index.ts:1: unsupported syntax \"<\""},
		{"backend.add(import(name));\n", "index.ts:1: dynamic import() must have one string literal argument"},
		{"const a = x as any;\n", "index.ts:1: not JavaScript after translation"},
	} {
		out, err := build(t, tc.src)
		require.Error(t, err, "%q built: %s", tc.src, out)
		require.Contains(t, out, "packages/backend/src/"+tc.want, "source %q", tc.src)
	}
}

func TestCommandsValidate(t *testing.T) {
	l := &Lab{Dir: t.TempDir(), ManifestsDir: "/m", BumpBin: "/bin/true"}
	for name, c := range l.Commands() {
		if _, err := exec.LookPath("npm"); err != nil && c.Argv[0] == "npm" {
			continue // Validate looks programs up; the fast tier may lack npm
		}
		require.NoError(t, c.Validate(name), name)
	}
}

// A lab's portal installs, builds and starts with the lab's own command
// and environment; bumped to the next release, installed and rebuilt, the
// catalog backend 4.0.0 applies its 2 migrations in a new batch.
func TestStartAndUpgrade(t *testing.T) {
	l := New(t, Options{})
	status, err := l.Run(context.Background(), "git", "status", "--porcelain")
	require.NoError(t, err)
	require.Empty(t, status, "node_modules, dist and .stagehand are ignored")

	s := startReady(t, l)
	resp, err := http.Get(l.URL + "/api/catalog/entities")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	count, batches := migrations(t, l, "backstage_plugin_catalog")
	require.Equal(t, CatalogMigrationsFrom, count)
	require.Equal(t, 1, batches)
	require.NoError(t, s.Stop(15*time.Second))

	runCommand(t, l, "backstage-bump", "--release", ToRelease)
	runCommand(t, l, "portal-install")
	runCommand(t, l, "portal-build")
	pkg, err := os.ReadFile(filepath.Join(l.Dir, "node_modules", "@backstage", "plugin-catalog-backend", "package.json"))
	require.NoError(t, err)
	require.Contains(t, string(pkg), `"version": "4.0.0"`)
	startReady(t, l)
	count, batches = migrations(t, l, "backstage_plugin_catalog")
	require.Equal(t, CatalogMigrationsTo, count)
	require.Equal(t, 2, batches)
}

// The plugin install by hand: add the package, register it, set its config
// key, build, start: its database has its migrations, its route answers
// without a token and the key took effect.
func TestPluginInstall(t *testing.T) {
	l := New(t, Options{})
	runCommand(t, l, "portal-add-plugin", PluginPackages...)
	pkg, err := os.ReadFile(filepath.Join(l.Dir, "packages", "backend", "package.json"))
	require.NoError(t, err)
	for _, p := range PluginPackages {
		at := strings.LastIndex(p, "@")
		require.Contains(t, string(pkg), `"`+p[:at]+`": "`+p[at+1:]+`"`, "pinned exactly")
	}

	index := filepath.Join(l.Dir, "packages", "backend", "src", "index.ts")
	src, err := os.ReadFile(index)
	require.NoError(t, err)
	require.Equal(t, 1, strings.Count(string(src), "\nbackend.start();"))
	src = []byte(strings.Replace(string(src), "\nbackend.start();", "\n"+strings.Join(PluginImports, "\n")+"\nbackend.start();", 1))
	require.NoError(t, os.WriteFile(index, src, 0o644))
	cfg := filepath.Join(l.Dir, "app-config.yaml")
	conf, err := os.ReadFile(cfg)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(cfg, append(conf, []byte(fmt.Sprintf("\nsearch:\n  maxTermLength: %d\n", PluginConfigValue))...), 0o644))
	runCommand(t, l, "portal-build")

	startReady(t, l)
	count, _ := migrations(t, l, PluginDatabase)
	require.Equal(t, PluginMigrations, count)
	get := func(path string) (int, string) {
		resp, err := http.Get(l.URL + path)
		require.NoError(t, err)
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	code, body := get(PluginRoute)
	require.Equal(t, http.StatusOK, code, body)
	require.Contains(t, body, `"results":[]`)
	// The config key took effect: a term longer than it (default 100) is
	// refused. The message is JSON inside the JSON error, hence \\\".
	code, body = get("/api/search/query?term=abcdefgh")
	require.Equal(t, http.StatusBadRequest, code, body)
	require.Contains(t, body, `The term length \\\"8\\\" is greater than \\\"5\\\"`)
}

// The failing release migrates and then exits non-zero with the fault's
// line, every time (5 starts, each from the pre-upgrade schema).
func TestFailReleaseFailsAfterMigrating(t *testing.T) {
	l := New(t, Options{})
	s := startReady(t, l)
	require.NoError(t, s.Stop(15*time.Second))
	count, _ := migrations(t, l, "backstage_plugin_catalog")
	require.Equal(t, CatalogMigrationsFrom, count)

	runCommand(t, l, "backstage-bump", "--release", FailRelease)
	runCommand(t, l, "portal-install")
	runCommand(t, l, "portal-build")
	for i := 1; i <= 5; i++ {
		begin := time.Now()
		s := l.Start(t)
		err := s.WaitReady(context.Background(), readyTimeout)
		require.Error(t, err, "run %d: the failing release became ready", i)
		require.Contains(t, err.Error(), "exited before it was ready")
		require.Equal(t, 1, s.ExitCode(), "run %d", i)
		require.Contains(t, s.LogTail(20), FaultMessage)
		count, batches := migrations(t, l, "backstage_plugin_catalog")
		require.Equal(t, CatalogMigrationsTo, count, "run %d", i)
		require.Equal(t, 2, batches, "run %d", i)
		t.Logf("run %d: exit 1 after migrating, in %s", i, time.Since(begin).Round(time.Millisecond))
		// Back to the pre-upgrade schema for the next run: 4.0.0's two
		// migrations only set storage parameters, so applying them again
		// is harmless.
		psql(t, l, "backstage_plugin_catalog", "DELETE FROM knex_migrations WHERE batch = 2")
	}
}
