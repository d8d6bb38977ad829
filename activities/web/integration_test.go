package web

// Integration tests of web.smoke against a REAL Backstage backend
// (tools/backstage: backend-defaults 0.18.0, catalog 3.9.1, auth with the
// guest provider) on a real PostgreSQL 15. They need `make backstage-tools`
// and the postgresql-15 package; without them they fail saying so.

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stagehand-dev/stagehand/activities"
	"github.com/stagehand-dev/stagehand/internal/backstagetest"
	"github.com/stagehand-dev/stagehand/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

type stepRun struct {
	out   map[string]any
	err   error
	beats []string
}

// TestSmokeAgainstRealBackstage starts web.smoke BEFORE the backend, so the
// step has to wait through "no response" and the readiness 503 of plugin
// initialisation, then checks that the presets pass, that failing checks
// name themselves with a snippet of Backstage's answer, and that the
// backend really ran its Knex migrations in PostgreSQL.
func TestSmokeAgainstRealBackstage(t *testing.T) {
	pg := pgtest.Shared(t)
	port := freeTCPPort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)

	done := make(chan stepRun, 1)
	go func() {
		out, err, beats := execStep(&Activities{}, "web.smoke", map[string]any{
			"url": base, "timeout": "4m", "interval": "250ms", "requestTimeout": "5s",
			"checks": []any{
				map[string]any{"preset": "readiness"},
				map[string]any{"preset": "catalog"},
				map[string]any{"preset": "signin"},
				map[string]any{"preset": "templates"},
				map[string]any{"preset": "docs"},
			},
		})
		done <- stepRun{out, err, beats}
	}()
	bs := backstagetest.New(t, backstagetest.Options{PG: pg, Port: port})
	var r stepRun
	select {
	case r = <-done:
	case <-time.After(5 * time.Minute):
		t.Fatalf("web.smoke did not finish\n%s", bs.LogTail(3000))
	}
	if r.err != nil {
		t.Fatalf("web.smoke: %v\n--- backend log ---\n%s", r.err, bs.LogTail(3000))
	}
	res := decodeSmoke(t, r.out)
	if res.Passed != 5 {
		t.Fatalf("passed %d of 5: %+v", res.Passed, res.Checks)
	}
	for _, c := range res.Checks {
		t.Logf("%-9s %d after %d attempts, %d ms", c.Name, c.Status, c.Attempts, c.ElapsedMs)
	}
	if res.Checks[0].Attempts < 2 {
		t.Errorf("readiness passed on attempt %d; the step started before the backend, so it should have retried", res.Checks[0].Attempts)
	}
	if res.Checks[2].Status != 200 {
		t.Errorf("guest sign-in answered %d, want 200 (a guest identity)", res.Checks[2].Status)
	}
	sawWaiting := false
	for _, b := range r.beats {
		if strings.Contains(b, "readiness: no response") || strings.Contains(b, "readiness: 503") {
			sawWaiting = true
		}
		if strings.Contains(b, "eyJ") {
			t.Errorf("heartbeat carries a token: %q", b)
		}
	}
	if !sawWaiting {
		t.Errorf("no heartbeat reported the backend coming up: %q", r.beats)
	}

	t.Run("failing checks name themselves", func(t *testing.T) {
		_, err, _ := runStep(t, &Activities{}, "web.smoke", map[string]any{
			"url": bs.URL, "timeout": "1s", "interval": "200ms",
			"checks": []any{
				map[string]any{"preset": "readiness"},
				// The test backend has no scaffolder: its API is not mounted.
				map[string]any{"name": "scaffolder", "path": "/api/scaffolder/v2/actions"},
				// The catalog is empty: no template is registered.
				map[string]any{"name": "has-templates", "preset": "templates", "bodyContains": `"kind":"Template"`},
				// Sign-in with a provider the portal does not configure.
				map[string]any{"name": "microsoft-signin", "preset": "signin", "provider": "microsoft"},
			},
		})
		ae := appError(t, err)
		msg := activities.CleanMessage(ae)
		t.Log(msg)
		if ae.Type() != "SmokeCheckFailed" || !ae.NonRetryable() {
			t.Errorf("type %s nonRetryable %v", ae.Type(), ae.NonRetryable())
		}
		for _, w := range []string{
			"3 of 4 smoke checks failed",
			"scaffolder: GET " + bs.URL + "/api/scaffolder/v2/actions: want 200, got 404",
			"has-templates: GET " + bs.URL + `/api/catalog/entities?filter=kind=template: want 200, got 200 but the body does not contain "\"kind\":\"Template\"": []`,
			"microsoft-signin: GET " + bs.URL + `/api/auth/microsoft/refresh: want 200 or 401, got 404: {"error":{"name":"NotFoundError","message":"Unknown auth provider 'microsoft'"`,
		} {
			if !strings.Contains(msg, w) {
				t.Errorf("message lacks %q", w)
			}
		}
	})

	t.Run("catalog migrations ran in PostgreSQL", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, pg.DSN("backstage_plugin_catalog"))
		if err != nil {
			t.Fatalf("connect to backstage_plugin_catalog: %v", err)
		}
		defer conn.Close(ctx)
		var n, batches int
		var latest string
		err = conn.QueryRow(ctx, `SELECT count(*), count(DISTINCT batch), max(name) FROM knex_migrations`).Scan(&n, &batches, &latest)
		if err != nil {
			t.Fatalf("read knex_migrations: %v", err)
		}
		t.Logf("backstage_plugin_catalog: %d migrations in %d batch(es), latest %s", n, batches, latest)
		if n < 10 {
			t.Errorf("only %d catalog migrations recorded; catalog 3.9.1 records about 43", n)
		}
		var dbs []string
		rows, err := conn.Query(ctx, `SELECT datname FROM pg_database WHERE datname LIKE 'backstage_plugin_%' ORDER BY 1`)
		if err != nil {
			t.Fatal(err)
		}
		dbs, err = pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		if strings.Join(dbs, ",") != "backstage_plugin_auth,backstage_plugin_catalog" {
			t.Errorf("plugin databases = %v, want auth and catalog", dbs)
		}
	})

	t.Run("stopped backend fails with no response", func(t *testing.T) {
		if err := bs.Stop(); err != nil {
			t.Fatal(err)
		}
		_, err, beats := runStep(t, &Activities{}, "web.smoke", map[string]any{
			"url": bs.URL, "timeout": "600ms", "interval": "100ms",
			"checks": []any{map[string]any{"preset": "catalog"}},
		})
		msg := activities.CleanMessage(appError(t, err))
		if !strings.Contains(msg, "catalog: GET "+bs.URL+"/api/catalog/entities?limit=1: want 200, got no response: ") {
			t.Errorf("message: %s", msg)
		}
		if len(beats) == 0 || !strings.Contains(beats[len(beats)-1], "0/1 checks passing; catalog: no response") {
			t.Errorf("heartbeats: %q", beats)
		}
	})
}

// TestSmokeRealBackstageFaults runs the presets against broken backends:
// one without the catalog plugin (a portal whose plugin failed to load)
// and one with Backstage's default auth policy on, where the catalog
// answers only with the static token given by tokenRef.
func TestSmokeRealBackstageFaults(t *testing.T) {
	pg := pgtest.Shared(t)

	t.Run("catalog plugin missing", func(t *testing.T) {
		bs := backstagetest.New(t, backstagetest.Options{PG: pg, Fault: backstagetest.FaultNoCatalog})
		out, err, _ := runStep(t, &Activities{}, "web.smoke", map[string]any{
			"url": bs.URL, "timeout": "1s", "interval": "200ms",
			"checks": []any{map[string]any{"preset": "readiness"}, map[string]any{"preset": "catalog"}, map[string]any{"preset": "signin"}},
		})
		if out != nil {
			t.Fatalf("passed without a catalog: %v", out)
		}
		ae := appError(t, err)
		msg := activities.CleanMessage(ae)
		t.Log(msg)
		if !strings.HasPrefix(msg, "1 of 3 smoke checks failed") ||
			!strings.Contains(msg, "catalog: GET "+bs.URL+"/api/catalog/entities?limit=1: want 200, got 404") {
			t.Errorf("message: %s", msg)
		}
	})

	t.Run("default auth policy with tokenRef", func(t *testing.T) {
		bs := backstagetest.New(t, backstagetest.Options{PG: pg, RequireAuth: true})
		checks := []any{map[string]any{"preset": "readiness"}, map[string]any{"preset": "catalog"}}

		_, err, _ := runStep(t, &Activities{}, "web.smoke", map[string]any{
			"url": bs.URL, "timeout": "500ms", "interval": "100ms", "checks": checks,
		})
		msg := activities.CleanMessage(appError(t, err))
		if !strings.Contains(msg, "catalog: GET "+bs.URL+"/api/catalog/entities?limit=1: want 200, got 401: ") {
			t.Errorf("without a token: %s", msg)
		}

		env := map[string]string{"BACKSTAGE_TOKEN": bs.StaticToken}
		a := &Activities{LookupEnv: func(k string) (string, bool) { v, ok := env[k]; return v, ok }}
		out, err, beats := runStep(t, a, "web.smoke", map[string]any{
			"url": bs.URL, "tokenRef": "env:BACKSTAGE_TOKEN", "checks": checks,
		})
		if err != nil {
			t.Fatalf("with the static token: %v", err)
		}
		if res := decodeSmoke(t, out); res.Passed != 2 {
			t.Errorf("passed %d of 2", res.Passed)
		}

		// A wrong token: Backstage's 401 must not echo ours back to us.
		env["BACKSTAGE_TOKEN"] = "wrong-" + bs.StaticToken
		_, err, beats2 := runStep(t, a, "web.smoke", map[string]any{
			"url": bs.URL, "tokenRef": "env:BACKSTAGE_TOKEN", "timeout": "300ms", "interval": "100ms", "checks": checks,
		})
		msg = activities.CleanMessage(appError(t, err))
		all := msg + strings.Join(append(beats, beats2...), "\n")
		if strings.Contains(all, bs.StaticToken) {
			t.Errorf("token leaked: %s", msg)
		}
		if !strings.Contains(msg, "want 200, got 401") {
			t.Errorf("wrong token: %s", msg)
		}
	})
}

func freeTCPPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
