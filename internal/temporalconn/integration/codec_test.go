package integration

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/proxy"
	"go.temporal.io/sdk/converter"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/stagehand-dev/stagehand/internal/devserver"
	"github.com/stagehand-dev/stagehand/internal/localenv"
	"github.com/stagehand-dev/stagehand/internal/payloadcodec"
	"github.com/stagehand-dev/stagehand/starter/cli"
)

// codecRunbook carries the planted value through a param, a step output
// (noop's echo) and an activity error (web.get's message names the URL),
// and waits at a gate in between so the worker can be restarted there.
const codecRunbook = `name: codectest
description: carries a planted value through params, outputs and an error
params:
  planted: {type: string, required: true}
  url: {type: string, required: true}
steps:
  - id: echo
    uses: noop
    with: {echo: "out-{{ .params.planted }}"}
  - id: gate
    approval:
      message: "continue?"
      approvers: [bob]
      timeout: 1h
  - id: fetch
    uses: web.get
    with: {url: "{{ .params.url }}", requestTimeout: 2s}
    retry: {maxAttempts: 1}
`

// TestCodecHistoryEncrypted: with the codec on, a real run's history as
// `temporal workflow show --output json` prints it holds the planted param,
// output and error text nowhere in clear, while `stagehand audit show` and
// `status` (decoding through the codec) show them. Key rotation: the run's
// first half is written under k1; a worker restarted with [k2, k1] replays
// it and writes the rest under k2. The codec server decodes the history's
// payloads for a caller with the token only.
func TestCodecHistoryEncrypted(t *testing.T) {
	srv := devserver.Shared(t)
	k1 := strings.Repeat("a1", 32)                                          // hex
	k2 := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0xb2}, 32)) // base64
	t.Setenv("STAGEHAND_TEST_CODEC_K1", k1)
	t.Setenv("STAGEHAND_TEST_CODEC_K2", k2)
	planted := fmt.Sprintf("planted%d", time.Now().UnixNano())
	url := fmt.Sprintf("http://127.0.0.1:%d/err-%s", closedPort(t), planted)

	dir := t.TempDir()
	writeFile(t, dir, "codectest.yaml", codecRunbook)
	cfg := workerConfig(t, srv.Address, srv.Namespace)
	cfg.RunbooksDir = dir
	cfg.Temporal.Codec.Keys = []payloadcodec.KeyRef{{ID: "k1", Ref: "env:STAGEHAND_TEST_CODEC_K1"}}
	first := startWorker(t, cfg)

	env := map[string]string{
		"TEMPORAL_ADDRESS": srv.Address, "TEMPORAL_NAMESPACE": srv.Namespace,
		"STAGEHAND_TASK_QUEUE": cfg.Temporal.TaskQueue, "USER": "alice",
		"STAGEHAND_CODEC_KEYS":    "k1=env:STAGEHAND_TEST_CODEC_K1",
		"STAGEHAND_TEST_CODEC_K1": k1, "STAGEHAND_TEST_CODEC_K2": k2,
	}
	id := runID(t)
	mustCLI(t, cli.ExitOK, env, "start", "codectest", "--param", "planted="+planted, "--param", "url="+url, "--id", id)
	mustCLI(t, cli.ExitWaitingApproval, env, "watch", id, "--interval", "100ms")
	out := mustCLI(t, cli.ExitOK, env, "status", id)
	assertContains(t, out, "waiting_approval")

	// Rotation: restart the worker with k2 first; the CLI too.
	first.Stop()
	cfg.Temporal.Codec.Keys = append([]payloadcodec.KeyRef{{ID: "k2", Ref: "env:STAGEHAND_TEST_CODEC_K2"}}, cfg.Temporal.Codec.Keys...)
	startWorker(t, cfg)
	env["STAGEHAND_CODEC_KEYS"] = "k2=env:STAGEHAND_TEST_CODEC_K2,k1=env:STAGEHAND_TEST_CODEC_K1"
	mustCLI(t, cli.ExitOK, env, "approve", id, "--as", "bob")
	mustCLI(t, cli.ExitRunFailed, env, "watch", id, "--interval", "100ms")

	// What the server holds, as the temporal CLI prints it.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	raw, err := srv.Command(ctx, "workflow", "show", "--workflow-id", id, "--output", "json").CombinedOutput()
	if err != nil {
		t.Fatalf("temporal workflow show: %v\n%s", err, raw)
	}
	shown := string(raw)
	// The temporal CLI prints payload data base64-encoded, so every string
	// is searched both as printed and base64-decoded.
	for _, clear := range []string{planted, "connection refused", "web.get: GET"} {
		if where := findInShow(t, raw, clear); len(where) > 0 {
			t.Errorf("temporal workflow show holds %q in clear at %s", clear, strings.Join(where, ", "))
		}
	}
	if !strings.Contains(shown, base64.StdEncoding.EncodeToString([]byte(payloadcodec.Encoding))) {
		t.Errorf("history has no %s payload: is the codec on at all?\n%.2000s", payloadcodec.Encoding, shown)
	}

	// Key ids in the raw history: k1 before the restart, k2 after.
	ids := historyKeyIDs(t, srv, id)
	if ids["k1"] == 0 || ids["k2"] == 0 {
		t.Errorf("payload key ids in history: %v, want both k1 (before the restart) and k2 (after)", ids)
	}
	if ids[""] != 0 {
		t.Errorf("%d payloads unencrypted in history", ids[""])
	}

	// The CLI decodes through the codec.
	out = mustCLI(t, cli.ExitOK, env, "audit", "show", id, "--output", "json")
	assertContains(t, out, planted, "out-"+planted, "err-"+planted)
	out = mustCLI(t, cli.ExitOK, env, "status", id)
	assertContains(t, out, "err-"+planted)
	// Without k1 the first half no longer reads, and the CLI says why.
	env["STAGEHAND_CODEC_KEYS"] = "k2=env:STAGEHAND_TEST_CODEC_K2"
	code, out := runCLI(t, env, "audit", "show", id)
	if code == cli.ExitOK || !strings.Contains(out, `"k1"`) {
		t.Errorf("audit show without k1: exit %d\n%s", code, out)
	}

	t.Run("control: a start without the CLI codec is in clear", func(t *testing.T) {
		// The assertion above can fail: the same check finds the value
		// when the CLI sends the input unencrypted (the worker still
		// reads it: plain payloads pass through).
		plain := map[string]string{}
		for k, v := range env {
			plain[k] = v
		}
		delete(plain, "STAGEHAND_CODEC_KEYS")
		cid := runID(t)
		mustCLI(t, cli.ExitOK, plain, "start", "codectest", "--param", "planted="+planted, "--param", "url="+url, "--id", cid)
		raw, err := srv.Command(ctx, "workflow", "show", "--workflow-id", cid, "--output", "json").CombinedOutput()
		if err != nil {
			t.Fatal(err)
		}
		if len(findInShow(t, raw, planted)) == 0 {
			t.Errorf("unencrypted start input not found in history: the clear-text check above proves nothing\n%.3000s", raw)
		}
		_ = srv.Client.TerminateWorkflow(ctx, cid, "", "test done")
	})

	t.Run("codec server", func(t *testing.T) {
		testCodecServer(t, env, historyPayload(t, srv, id), func(endpoint, token string) {
			// The official temporal CLI speaks the same protocol: through
			// the codec server it prints the run decrypted.
			raw, err := srv.Command(ctx, "workflow", "show", "--workflow-id", id, "--output", "json",
				"--codec-endpoint", endpoint, "--codec-auth", "Bearer "+token).CombinedOutput()
			if err != nil {
				t.Fatalf("temporal workflow show --codec-endpoint: %v\n%s", err, raw)
			}
			if len(findInShow(t, raw, planted)) == 0 {
				t.Errorf("temporal workflow show through the codec server lacks the planted value:\n%.2000s", raw)
			}
		})
	})
}

// findInShow returns the JSON paths of `temporal workflow show --output
// json` output whose string value holds needle, as printed or after
// base64 decoding (how the CLI prints payload data).
func findInShow(t *testing.T, raw []byte, needle string) []string {
	t.Helper()
	var doc any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("temporal workflow show output is not JSON: %v\n%.500s", err, raw)
	}
	var found []string
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				walk(path+"."+k, e)
			}
		case []any:
			for i, e := range x {
				walk(fmt.Sprintf("%s[%d]", path, i), e)
			}
		case string:
			if strings.Contains(x, needle) {
				found = append(found, path)
			} else if b, err := base64.StdEncoding.DecodeString(x); err == nil && bytes.Contains(b, []byte(needle)) {
				found = append(found, path+" (base64)")
			}
		}
	}
	walk("", doc)
	return found
}

// historyKeyIDs counts the history's payloads by encryption key id ("" for
// unencrypted ones), read with a client that has no codec.
func historyKeyIDs(t *testing.T, srv *devserver.Server, id string) map[string]int {
	t.Helper()
	ids := map[string]int{}
	iter := srv.Client.GetWorkflowHistory(context.Background(), id, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for iter.HasNext() {
		ev, err := iter.Next()
		if err != nil {
			t.Fatal(err)
		}
		err = proxy.VisitPayloads(context.Background(), ev, proxy.VisitPayloadsOptions{
			SkipSearchAttributes: true,
			Visitor: func(_ *proxy.VisitPayloadsContext, ps []*commonpb.Payload) ([]*commonpb.Payload, error) {
				for _, p := range ps {
					ids[string(p.GetMetadata()[payloadcodec.MetadataKeyID])]++
				}
				return ps, nil
			},
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return ids
}

// historyPayload is the run's first encrypted input payload, as the UI
// would send it to the codec server.
func historyPayload(t *testing.T, srv *devserver.Server, id string) *commonpb.Payload {
	iter := srv.Client.GetWorkflowHistory(context.Background(), id, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	ev, err := iter.Next()
	if err != nil {
		t.Fatal(err)
	}
	ps := ev.GetWorkflowExecutionStartedEventAttributes().GetInput().GetPayloads()
	if len(ps) == 0 {
		t.Fatal("no input payload")
	}
	return proto.Clone(ps[0]).(*commonpb.Payload)
}

// testCodecServer runs `stagehand codec-server` on a free port and calls it
// as the UI does: the preflight, /decode without and with the token.
func testCodecServer(t *testing.T, env map[string]string, p *commonpb.Payload, alsoCheck func(endpoint, token string)) {
	port, err := localenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	e := map[string]string{}
	for k, v := range env {
		e[k] = v
	}
	e["STAGEHAND_CODEC_KEYS"] = "k2=env:STAGEHAND_TEST_CODEC_K2,k1=env:STAGEHAND_TEST_CODEC_K1"
	e["STAGEHAND_CODEC_AUTH"] = "codec-token-for-test"
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan string, 1)
	go func() {
		var out, errOut bytes.Buffer
		f := cli.NewFactory(&cli.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut})
		f.Getenv = func(k string) string { return e[k] }
		code := cli.Main(ctx, []string{"codec-server", "--listen", fmt.Sprintf("127.0.0.1:%d", port), "--ui-origin", "http://localhost:8233"}, f)
		done <- fmt.Sprintf("exit %d: %s%s", code, out.String(), errOut.String())
	}()
	defer func() {
		cancel()
		if msg := <-done; !strings.HasPrefix(msg, "exit 0") {
			t.Errorf("codec-server: %s", msg)
		}
	}()
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	body, err := protojson.Marshal(&commonpb.Payloads{Payloads: []*commonpb.Payload{p}})
	if err != nil {
		t.Fatal(err)
	}
	call := func(method, auth string) (int, http.Header, string) {
		deadline := time.Now().Add(10 * time.Second)
		for {
			req, _ := http.NewRequest(method, base+"/decode", bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("X-Namespace", "default")
			req.Header.Set("Origin", "http://localhost:8233")
			if method == http.MethodOptions {
				req.Header.Set("Access-Control-Request-Method", "POST")
				req.Header.Set("Access-Control-Request-Headers", "authorization,content-type,x-namespace")
			}
			if auth != "" {
				req.Header.Set("Authorization", auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				if time.Now().After(deadline) {
					t.Fatalf("codec server not answering: %v", err)
				}
				time.Sleep(50 * time.Millisecond)
				continue
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			return resp.StatusCode, resp.Header, string(b)
		}
	}
	code, hdr, _ := call(http.MethodOptions, "")
	if code != http.StatusNoContent || !strings.Contains(strings.ToLower(hdr.Get("Access-Control-Allow-Headers")), "authorization") ||
		hdr.Get("Access-Control-Allow-Origin") != "http://localhost:8233" {
		t.Errorf("preflight: %d %v", code, hdr)
	}
	if code, _, b := call(http.MethodPost, ""); code != http.StatusUnauthorized || strings.Contains(b, "planted") {
		t.Errorf("decode without token: %d %s", code, b)
	}
	code, _, b := call(http.MethodPost, "Bearer codec-token-for-test")
	if code != http.StatusOK {
		t.Fatalf("decode with token: %d %s", code, b)
	}
	var out commonpb.Payloads
	if err := protojson.Unmarshal([]byte(b), &out); err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := converter.GetDefaultDataConverter().FromPayload(out.Payloads[0], &raw); err != nil {
		t.Fatalf("decoded payload: %v", err)
	}
	if !strings.Contains(fmt.Sprint(raw), "planted") {
		t.Errorf("decoded input lacks the planted param: %v", raw)
	}
	alsoCheck(base, "codec-token-for-test")
}
