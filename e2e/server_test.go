package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"

	"github.com/stagehand-dev/stagehand/activities/db"
	"github.com/stagehand-dev/stagehand/activities/server"
	"github.com/stagehand-dev/stagehand/internal/localenv"
	"github.com/stagehand-dev/stagehand/internal/serverlab"
	"github.com/stagehand-dev/stagehand/internal/upgradelab"
	"github.com/stagehand-dev/stagehand/worker/config"
	"github.com/stagehand-dev/stagehand/workflows"
)

// TestSingleServer runs the single-server runbooks (server, plugin-install,
// upgrade) through the worker binary against a real Backstage portal
// served from a git work tree on its own PostgreSQL (internal/serverlab):
// the process is the worker's, started, stopped and restarted by it, with
// a worker SIGKILLed in between; a real plugin is installed; the portal is
// upgraded, and an upgrade whose new version dies while starting (after
// its migrations ran) is rolled back with the database restored behind its
// gate and the packages put back from git.
func TestSingleServer(t *testing.T) {
	localenv.SkipIfShort(t, systemsNeeded)
	t.Run("lifecycle-plugin-upgrade", func(t *testing.T) {
		t.Parallel()
		serverLifecyclePluginUpgrade(t)
	})
	t.Run("failed-upgrade-restored", func(t *testing.T) {
		t.Parallel()
		serverFailedUpgradeRestored(t)
	})
}

var serverLabs atomic.Int64

// serverLabE2E is one portal server with its worker config.
type serverLabE2E struct {
	t         *testing.T
	lab       *serverlab.Lab
	cfg       config.Config
	taskQueue string
	prefix    string
}

// The approvers of the portal's gates; runs are requested by alice.
const serverApprover = "bob"

func newServerLab(t *testing.T) *serverLabE2E {
	t.Helper()
	n := serverLabs.Add(1)
	lab := serverlab.New(t, serverlab.Options{BumpBin: bumpBin})
	// Each lab's password travels in its own worker variable, so labs run
	// side by side in one test process.
	pwEnv := fmt.Sprintf("E2E_PORTAL_DB_PASSWORD_%d", n)
	require.NoError(t, os.Setenv(pwEnv, lab.Secrets[serverlab.PasswordEnv]))
	env := map[string]string{}
	for k, v := range lab.Env {
		if v == "env:"+serverlab.PasswordEnv {
			v = "env:" + pwEnv
		}
		env[k] = v
	}
	database := lab.Database
	database.PasswordRef = "env:" + pwEnv

	l := &serverLabE2E{t: t, lab: lab, taskQueue: fmt.Sprintf("e2e-server-%d-%d", time.Now().UnixNano(), n),
		prefix: fmt.Sprintf("server-e2e-%d-%d", time.Now().Unix(), n)}
	cfg := config.Defaults()
	cfg.Temporal = config.Temporal{Address: temporalSrv.Address, Namespace: temporalSrv.Namespace, TaskQueue: l.taskQueue}
	root := t.TempDir()
	cfg.WorkDir = filepath.Join(root, "worker")
	cfg.Backups = config.Backups{Dir: filepath.Join(root, "backups")}
	cfg.Environments = map[string]config.Environment{
		// "prod" is the upgrade runbook's default production; the worker
		// has no sandbox, which a single server does not need.
		"prod": {Kind: config.KindServer, URL: lab.URL, Database: serverlab.DatabaseName, Approvers: []string{serverApprover, "carol"},
			Server: &server.Config{
				Dir: lab.Dir, Command: lab.Command, Env: env, LogFile: lab.LogFile, PidFile: lab.PidFile, HealthURL: lab.HealthURL,
				StopTimeout: 20 * time.Second, StartTimeout: 3 * time.Minute,
			}},
	}
	cfg.Databases = map[string]db.Database{serverlab.DatabaseName: database}
	cfg.Commands = lab.Commands()
	cfg.Settings = map[string]any{
		"upgrade": map[string]any{"bumpCommand": "backstage-bump"},
		"server":  map[string]any{"installCommand": "portal-install", "buildCommand": "portal-build"},
		"plugin":  map[string]any{"addCommand": "portal-add-plugin"},
	}
	l.cfg = cfg
	// The server outlives the workers; stop it when the test ends.
	t.Cleanup(func() {
		if pid := l.pidFromFile(); pid > 0 {
			_ = syscall.Kill(-pid, syscall.SIGKILL)
		}
		if t.Failed() {
			b, _ := os.ReadFile(lab.LogFile)
			t.Logf("server log (tail):\n%s", tail(string(b), 4000))
		}
	})
	return l
}

// run starts a runbook and waits (up to timeout) for it to end.
func (l *serverLabE2E) run(name, runbook string, params map[string]any, timeout time.Duration) (workflows.Status, error) {
	l.t.Helper()
	id := l.prefix + "-" + name
	l.startRun(id, runbook, params)
	return l.final(id, timeout)
}

func (l *serverLabE2E) startRun(id, runbook string, params map[string]any) {
	l.t.Helper()
	_, err := temporalSrv.Client.ExecuteWorkflow(context.Background(), client.StartWorkflowOptions{ID: id, TaskQueue: l.taskQueue},
		workflows.WorkflowType, workflows.RunInput{Runbook: runbook, Params: params, RequestedBy: "alice"})
	require.NoError(l.t, err)
}

func (l *serverLabE2E) final(id string, timeout time.Duration) (workflows.Status, error) {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var st workflows.Status
	err := temporalSrv.Client.GetWorkflow(ctx, id, "").Get(ctx, &st)
	if err != nil {
		if s, qerr := status(l.t, id); qerr == nil {
			st = s
		}
	}
	return st, err
}

// runApproved starts a runbook, approves gate as the environment's
// approver when the run reaches it, and waits for the end.
func (l *serverLabE2E) runApproved(name, runbook, gate string, params map[string]any, timeout time.Duration) (workflows.Status, error) {
	l.t.Helper()
	id := l.prefix + "-" + name
	l.startRun(id, runbook, params)
	waitGate(l.t, id, gate, timeout)
	update(l.t, id, fmt.Sprintf(`{"gate":%q,"decision":"approve","by":%q}`, gate, serverApprover))
	return l.final(id, timeout)
}

// pidFromFile is the pid the worker's pid file records (0 for none).
func (l *serverLabE2E) pidFromFile() int {
	data, err := os.ReadFile(l.lab.PidFile)
	if err != nil {
		return 0
	}
	var pf server.PidFile
	if json.Unmarshal(data, &pf) != nil {
		return 0
	}
	return pf.Pid
}

func (l *serverLabE2E) get(path string) (int, string) {
	l.t.Helper()
	resp, err := http.Get(l.lab.URL + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	return resp.StatusCode, string(b)
}

// migrations counts a plugin database's knex_migrations rows (-1: no such
// database).
func (l *serverLabE2E) migrations(database string) int {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, l.lab.PG.DSN(database))
	if err != nil {
		return -1
	}
	defer conn.Close(ctx)
	var n int
	require.NoError(l.t, conn.QueryRow(ctx, "SELECT count(*) FROM knex_migrations").Scan(&n))
	return n
}

func (l *serverLabE2E) file(rel string) string {
	l.t.Helper()
	b, err := os.ReadFile(filepath.Join(l.lab.Dir, rel))
	require.NoError(l.t, err)
	return string(b)
}

// alive: the process exists and is not a zombie (a server whose worker
// was killed is reparented to an init that may never reap it).
func alive(pid int) bool {
	if pid <= 0 || syscall.Kill(pid, 0) != nil {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// Field 3, after the command in parentheses, is the state.
	rest := string(stat[strings.LastIndexByte(string(stat), ')')+1:])
	return !strings.HasPrefix(strings.TrimSpace(rest), "Z")
}

func intOutput(st workflows.Status, step, key string) int {
	switch v := outputsOf(st, step)[key].(type) {
	case float64:
		return int(v)
	case int64:
		return int(v)
	case int:
		return v
	}
	return 0
}

// serverLifecyclePluginUpgrade: start the portal with the server runbook,
// SIGKILL the worker (the portal keeps serving), stop it with a new worker
// (the same process), restart it; install a real plugin with its config
// key; then upgrade it to the next release.
func serverLifecyclePluginUpgrade(t *testing.T) {
	l := newServerLab(t)
	w := startWorkerBinary(t, l.cfg)

	st, err := l.run("start", "server", map[string]any{"environment": "prod", "action": "start"}, 5*time.Minute)
	require.NoError(t, err, "%s", st.Error)
	pid := intOutput(st, "start", "pid")
	require.NotZero(t, pid)
	assert.Equal(t, pid, l.pidFromFile())
	code, _ := l.get(serverlab.ReadinessPath)
	assert.Equal(t, http.StatusOK, code)
	assert.NotEmpty(t, outputsOf(st, "logs")["tail"], "the start's log lines are returned")

	// A worker killed while the server runs: the server is not its child
	// in any way that matters (own session, log file, no pipes).
	w.kill()
	assert.True(t, alive(pid), "the server survives the worker's SIGKILL")
	code, _ = l.get(serverlab.ReadinessPath)
	assert.Equal(t, http.StatusOK, code, "and keeps serving")

	w = startWorkerBinary(t, l.cfg)
	st, err = l.run("status", "server", map[string]any{"environment": "prod", "action": "status"}, 2*time.Minute)
	require.NoError(t, err, "%s", st.Error)
	assert.Equal(t, pid, intOutput(st, "status", "pid"), "the new worker finds the same process")
	assert.Equal(t, true, outputsOf(st, "status")["healthy"])

	st, err = l.run("stop", "server", map[string]any{"environment": "prod", "action": "stop"}, 2*time.Minute)
	require.NoError(t, err, "%s", st.Error)
	assert.Equal(t, pid, intOutput(st, "stop", "pid"), "server.stop stops the process the killed worker started")
	assert.Equal(t, "SIGTERM", outputsOf(st, "stop")["signal"])
	assert.False(t, alive(pid), "the process is gone")
	assert.Zero(t, l.pidFromFile(), "and its pid file")

	st, err = l.run("restart", "server", map[string]any{"environment": "prod", "action": "restart"}, 5*time.Minute)
	require.NoError(t, err, "%s", st.Error)
	newPid := intOutput(st, "restart", "pid")
	assert.NotEqual(t, pid, newPid)
	assert.True(t, alive(newPid))

	// --- plugin install ---------------------------------------------------
	head := strings.TrimSpace(l.git("rev-parse", "HEAD"))
	assert.Equal(t, -1, l.migrations(serverlab.PluginDatabase), "the plugin has no database yet")
	name, version := splitPackage(serverlab.PluginPackages[0])
	st, err = l.runApproved("plugin", "plugin-install", "go", map[string]any{
		"package": name, "version": version, "modules": strings.Join(serverlab.PluginPackages[1:], ","),
		"config":      fmt.Sprintf(`{%q: %d}`, serverlab.PluginConfigKey, serverlab.PluginConfigValue),
		"route":       strings.TrimPrefix(serverlab.PluginRoute, "/api/"+serverlab.PluginID+"/"),
		"environment": "prod",
	}, 8*time.Minute)
	require.NoError(t, err, "%s", st.Error)
	assert.Equal(t, serverlab.PluginMigrations, l.migrations(serverlab.PluginDatabase), "the plugin's database exists with its migrations")
	code, body := l.get(serverlab.PluginRoute)
	assert.Equal(t, http.StatusOK, code, body)
	code, body = l.get("/api/search/query?term=abcdefgh")
	assert.Equal(t, http.StatusBadRequest, code, "search.maxTermLength was set and read: %s", body)
	assert.Contains(t, l.file("app-config.yaml"), "# Backstage configuration of the portal", "comments kept")
	for _, line := range serverlab.PluginImports {
		assert.Contains(t, l.file("packages/backend/src/index.ts"), line)
	}
	assert.Equal(t, true, outputsOf(st, "register")["added"])
	assert.Contains(t, fmt.Sprint(outputsOf(st, "verify")["summary"]), "search: new plugin database, 2 new migrations")
	log := l.git("log", "--format=%s", head+"..HEAD")
	assert.Contains(t, log, "Install "+name+"@"+version, "the edits are committed in the server's work tree")
	clean := l.git("status", "--porcelain")
	assert.Empty(t, strings.TrimSpace(clean), "and nothing is left uncommitted")

	// --- upgrade -------------------------------------------------------------
	assert.Equal(t, serverlab.CatalogMigrationsFrom, l.migrations("backstage_plugin_catalog"))
	st, err = l.runApproved("upgrade", "upgrade", "server_go", map[string]any{"release": serverlab.ToRelease, "smokeTimeout": "1m"}, 10*time.Minute)
	require.NoError(t, err, "%s", st.Error)
	assert.Equal(t, serverlab.CatalogMigrationsTo, l.migrations("backstage_plugin_catalog"), "catalog 4.0.0 applied its migrations")
	plugins, _ := outputsOf(st, "server_verify")["plugins"].(map[string]any)
	catalog, _ := plugins["catalog"].(map[string]any)
	assert.Len(t, catalog["newMigrations"], 2, "server_verify saw the catalog's two new migrations")
	assert.Equal(t, false, outputsOf(st, "server_verify")["rollbackSafe"])
	assert.Contains(t, l.file("backstage.json"), serverlab.ToRelease)
	assert.Equal(t, serverlab.FromRelease+" → "+serverlab.ToRelease, st.Audit.Summary["version"])
	assert.Contains(t, st.Audit.Summary["migrations"], "catalog+2")
	code, _ = l.get(serverlab.ReadinessPath)
	assert.Equal(t, http.StatusOK, code)
	for _, step := range []string{"checkout", "build", "push", "sandbox_apply", "promote", "prod_apply"} {
		assert.Equal(t, workflows.StepSkipped, stepState(st, step), "%s is a Kubernetes step", step)
	}
}

// serverFailedUpgradeRestored: the new version migrates the catalog, then
// dies while starting. The run fails with the last log lines, a restore
// gate waits, and once approved the database is restored, the packages
// are put back from git and the previous version starts again.
func serverFailedUpgradeRestored(t *testing.T) {
	l := newServerLab(t)
	startWorkerBinary(t, l.cfg)
	st, err := l.run("start", "server", map[string]any{"environment": "prod", "action": "start"}, 5*time.Minute)
	require.NoError(t, err, "%s", st.Error)
	head := strings.TrimSpace(l.git("rev-parse", "HEAD"))
	pid := l.pidFromFile()

	// The install fails (the release names a catalog backend npm does not
	// have): nothing migrated, so the packages go back and the previous
	// version starts again without asking.
	st, err = l.runApproved("install-fails", "upgrade", "server_go", map[string]any{"release": upgradelab.BrokenRelease, "smokeTimeout": "1m"}, 10*time.Minute)
	require.Error(t, err)
	assert.Equal(t, workflows.StepFailed, stepState(st, "server_install"))
	assert.Equal(t, workflows.StepPending, stepState(st, "server_start"))
	assert.Equal(t, true, outputsOf(st, "server_safe")["echo"], "nothing migrated")
	for _, step := range []string{"server_revert", "server_reinstall", "server_rebuild", "server_restart", "server_restore_ready"} {
		assert.Equal(t, workflows.StepSucceeded, compensationState(st, step), step)
	}
	assert.Equal(t, workflows.StepSkipped, compensationState(st, "server_restore"), "no gate when nothing migrated")
	assert.Equal(t, head, strings.TrimSpace(l.git("rev-parse", "HEAD")), "the work tree is back at its commit")
	assert.Contains(t, l.file("backstage.json"), serverlab.FromRelease)
	assert.NotEqual(t, pid, l.pidFromFile(), "the previous version was started again")
	code, _ := l.get(serverlab.ReadinessPath)
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "previous version restarted", st.Audit.Summary["rollback"])

	id := l.prefix + "-upgrade-fails"
	l.startRun(id, "upgrade", map[string]any{"release": serverlab.FailRelease, "smokeTimeout": "1m", "restoreTimeout": "10m"})
	waitGate(t, id, "server_go", 5*time.Minute)
	update(t, id, fmt.Sprintf(`{"gate":"server_go","decision":"approve","by":%q}`, serverApprover))
	st = waitGate(t, id, "server_restore", 10*time.Minute)
	assert.Equal(t, workflows.StepFailed, stepState(st, "server_start"))
	assert.Contains(t, st.Error, "exited with code 1")
	assert.Contains(t, st.Error, serverlab.FaultMessage, "the failed start quotes the server's last log lines")
	assert.Equal(t, serverlab.CatalogMigrationsTo, l.migrations("backstage_plugin_catalog"), "the new version migrated before it died")
	assert.Equal(t, false, outputsOf(st, "server_migrations")["rollbackSafe"])
	assert.Equal(t, workflows.StepPending, compensationState(st, "server_revert"), "packages are not put back before the database")
	assert.Contains(t, l.file("backstage.json"), serverlab.FailRelease, "the work tree still has the new release while the gate waits")
	assert.NotEqual(t, head, strings.TrimSpace(l.git("rev-parse", "HEAD")), "and its commit")

	update(t, id, fmt.Sprintf(`{"gate":"server_restore","decision":"approve","by":%q,"comment":"restore the portal"}`, serverApprover))
	final, err := l.final(id, 10*time.Minute)
	require.Error(t, err)
	assert.Equal(t, workflows.RunFailed, final.State, "a restored upgrade is still a failed upgrade")
	for _, step := range []string{"server_restore_stop", "server_restore_db", "server_revert", "server_reinstall", "server_rebuild",
		"server_restart", "server_restore_verify", "server_restore_ready"} {
		assert.Equal(t, workflows.StepSucceeded, compensationState(final, step), step)
	}
	assert.Equal(t, serverlab.CatalogMigrationsFrom, l.migrations("backstage_plugin_catalog"), "the migration rows are back")
	assert.Contains(t, l.file("backstage.json"), serverlab.FromRelease, "backstage.json is back")
	assert.Contains(t, l.file("packages/backend/package.json"), `"@backstage/plugin-catalog-backend": "3.9.1"`, "the packages are back")
	assert.Equal(t, head, strings.TrimSpace(l.git("rev-parse", "HEAD")), "the work tree is at the commit it had")
	code, _ = l.get(serverlab.ReadinessPath)
	assert.Equal(t, http.StatusOK, code, "the previous version starts cleanly")
	assert.Equal(t, "database restored, packages put back", final.Audit.Summary["rollback"])
}

// splitPackage splits "@scope/name@1.2.3" into name and version.
func splitPackage(spec string) (string, string) {
	i := strings.LastIndex(spec, "@")
	return spec[:i], spec[i+1:]
}

// git runs git in the portal's work tree.
func (l *serverLabE2E) git(args ...string) string {
	l.t.Helper()
	out, err := l.lab.Run(context.Background(), append([]string{"git"}, args...)...)
	require.NoError(l.t, err)
	return out
}
