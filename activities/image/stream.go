package image

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/docker/docker/pkg/jsonmessage"
)

// Bounds on what a failure message and a heartbeat carry of the engine's
// output; the whole output goes to the worker's log.
const (
	maxTailLines      = 20
	maxTailBytes      = 4096
	maxTailLineBytes  = 512
	maxLogLineBytes   = 8192
	heartbeatLines    = 5
	maxEngineErrBytes = 1024
)

// stepLineRE matches the line a builder prints when it starts a Dockerfile
// step: "Step 3/5 : RUN ..." (dockerd's classic builder) or "STEP 3/5: RUN
// ..." (podman/buildah).
var stepLineRE = regexp.MustCompile(`(?i)^step \d+/\d+\s*:`)

// decodeStream reads a JSON message stream (what /build, /images/push and
// /images/create answer), calling handle for each message. A stream cut
// short (the engine died) is an error; its normal end is not.
func decodeStream(r io.Reader, handle func(jsonmessage.JSONMessage)) error {
	dec := json.NewDecoder(r)
	for {
		var m jsonmessage.JSONMessage
		err := dec.Decode(&m)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read the engine's message stream: %v", err)
		}
		handle(m)
	}
}

// messageError is the error a stream message carries, if any: an error
// line in the stream is a failure even though the HTTP call succeeded.
func messageError(m jsonmessage.JSONMessage) string {
	if m.Error != nil && m.Error.Message != "" {
		return m.Error.Message
	}
	return m.ErrorMessage
}

// progressBar reports whether m is a progress update ("Downloading [=> ]
// 1 MB/20 MB"): hundreds of those per layer say nothing in a log. Status
// lines carry an empty progressDetail too, so the numbers decide.
func progressBar(m jsonmessage.JSONMessage) bool {
	return m.ProgressMessage != "" || (m.Progress != nil && (m.Progress.Current > 0 || m.Progress.Total > 0))
}

// builderNoiseRE matches the builders' bookkeeping lines (" ---> Running in
// 5e6f", "--> 1356829d1d6"): logged, but not what explains a failure.
var builderNoiseRE = regexp.MustCompile(`^\s*-{2,3}> `)

// buildLog follows a build's output: the current Dockerfile step, that
// step's last lines, the image id and the error, if the build fails. It is
// read by the heartbeat goroutine while the stream is being decoded.
type buildLog struct {
	mu        sync.Mutex
	step      string
	stepLines []string
	recent    []string
	partial   string
	imageID   string
	errMsg    string
}

// BuildProgress is the heartbeat detail of a running image.build.
type BuildProgress struct {
	Step  string   `json:"step,omitempty"`
	Lines []string `json:"lines,omitempty"`
}

// handle takes one message and returns the complete lines it finished (to
// log) and whether a new Dockerfile step began.
func (b *buildLog) handle(m jsonmessage.JSONMessage) (lines []string, newStep bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if m.Aux != nil {
		var aux struct {
			ID string `json:"ID"`
		}
		if json.Unmarshal(*m.Aux, &aux) == nil && aux.ID != "" {
			b.imageID = aux.ID
		}
	}
	text := ""
	switch {
	case m.Stream != "":
		text = m.Stream
	case m.Status != "" && !progressBar(m):
		// Pull progress bars of FROM images are left out; their
		// status lines ("Pulling fs layer", "Download complete") stay.
		text = m.Status
		if m.ID != "" {
			text = m.ID + ": " + text
		}
		text += "\n"
		if b.partial != "" {
			// A status record is a line of its own, not the end of
			// the builder's unfinished one.
			text = "\n" + text
		}
	}
	if text != "" {
		chunk := b.partial + text
		parts := strings.Split(chunk, "\n")
		b.partial = parts[len(parts)-1]
		if len(b.partial) > maxLogLineBytes {
			parts = append(parts[:len(parts)-1], b.partial, "")
			b.partial = ""
		}
		for _, line := range parts[:len(parts)-1] {
			line = strings.TrimRight(line, "\r")
			if line == "" {
				continue
			}
			line = bounded(line, maxLogLineBytes)
			lines = append(lines, line)
			if b.addLine(line) {
				newStep = true
			}
		}
	}
	if msg := messageError(m); msg != "" && b.errMsg == "" {
		b.errMsg = strings.TrimSpace(msg)
	}
	return lines, newStep
}

// finish flushes a last line that had no newline.
func (b *buildLog) finish() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	line := strings.TrimSpace(b.partial)
	b.partial = ""
	if line == "" {
		return nil
	}
	line = bounded(line, maxLogLineBytes)
	b.addLine(line)
	return []string{line}
}

func (b *buildLog) addLine(line string) (newStep bool) {
	short := bounded(line, maxTailLineBytes)
	b.recent = appendBounded(b.recent, short, heartbeatLines)
	if stepLineRE.MatchString(line) {
		b.step = short
		b.stepLines = nil
		return true
	}
	if !builderNoiseRE.MatchString(line) {
		b.stepLines = appendBounded(b.stepLines, short, maxTailLines)
	}
	return false
}

func appendBounded(s []string, v string, n int) []string {
	s = append(s, v)
	if len(s) > n {
		s = append(s[:0:0], s[len(s)-n:]...)
	}
	return s
}

func (b *buildLog) progress() BuildProgress {
	b.mu.Lock()
	defer b.mu.Unlock()
	return BuildProgress{Step: b.step, Lines: append([]string(nil), b.recent...)}
}

func (b *buildLog) failed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.errMsg != ""
}

// failure describes a failed build for a person: the step that failed, the
// engine's error and that step's last output lines, within maxTailBytes.
func (b *buildLog) failure(image string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var sb strings.Builder
	fmt.Fprintf(&sb, "build of %s failed", image)
	if b.step != "" {
		fmt.Fprintf(&sb, " at %s", b.step)
	}
	fmt.Fprintf(&sb, ": %s", bounded(b.errMsg, maxEngineErrBytes))
	if len(b.stepLines) == 0 {
		return sb.String()
	}
	// The last lines matter most: drop from the front to fit.
	lines := b.stepLines
	size := 0
	first := len(lines)
	for first > 0 && size+len(lines[first-1])+3 <= maxTailBytes {
		first--
		size += len(lines[first]) + 3
	}
	fmt.Fprintf(&sb, "\nlast output of the step (%d lines):", len(lines)-first)
	for _, l := range lines[first:] {
		sb.WriteString("\n  ")
		sb.WriteString(l)
	}
	return sb.String()
}

// pushDigestRE matches the line both dockerd and podman print when the
// manifest is stored: "v1: digest: sha256:... size: 735".
var pushDigestRE = regexp.MustCompile(`digest: (sha256:[0-9a-f]{64}) size: (\d+)`)

// pushLog follows a push's output.
type pushLog struct {
	mu      sync.Mutex
	digest  string
	size    int64
	errMsg  string
	last    string
	layers  map[string]string
	pushing int
}

// PushProgress is the heartbeat detail of a running image.push.
type PushProgress struct {
	Status string `json:"status,omitempty"`
	Layers int    `json:"layers,omitempty"`
}

// handle takes one message and returns the line to log, if any.
func (p *pushLog) handle(m jsonmessage.JSONMessage) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if m.Aux != nil {
		// dockerd sends {"Tag","Digest","Size"} as the push's result.
		var aux struct {
			Digest string `json:"Digest"`
			Size   int64  `json:"Size"`
		}
		if json.Unmarshal(*m.Aux, &aux) == nil && strings.HasPrefix(aux.Digest, "sha256:") {
			p.digest, p.size = aux.Digest, aux.Size
		}
	}
	if msg := messageError(m); msg != "" {
		if p.errMsg == "" {
			p.errMsg = strings.TrimSpace(msg)
		}
		return "error: " + strings.TrimSpace(msg)
	}
	if m.Status == "" || progressBar(m) {
		return ""
	}
	if sm := pushDigestRE.FindStringSubmatch(m.Status); sm != nil && p.digest == "" {
		p.digest = sm[1]
		p.size, _ = strconv.ParseInt(sm[2], 10, 64)
	}
	line := m.Status
	if m.ID != "" {
		if p.layers == nil {
			p.layers = map[string]string{}
		}
		p.layers[m.ID] = m.Status
		line = m.ID + ": " + line
	}
	p.last = bounded(line, maxTailLineBytes)
	return bounded(line, maxLogLineBytes)
}

func (p *pushLog) progress() PushProgress {
	p.mu.Lock()
	defer p.mu.Unlock()
	return PushProgress{Status: p.last, Layers: len(p.layers)}
}

func (p *pushLog) result() (digest string, size int64, errMsg string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.digest, p.size, p.errMsg
}

// authFailure reports whether a registry error means the credentials were
// refused or are missing. Registries and engines word it differently:
// "unauthorized: authentication required" (distribution), "denied: requested
// access to the resource is denied" (Docker Hub), "401 Unauthorized",
// "403 Forbidden", "no basic auth credentials" (dockerd without creds).
func authFailure(msg string) bool {
	return authFailureRE.MatchString(strings.ToLower(msg))
}

// authFailureRE matches whole words: a digest (sha256:9f401e…) or an
// address holding "401", or "permission denied" from the worker's own
// network, is not the registry refusing the credentials.
var authFailureRE = regexp.MustCompile(`unauthorized|authentication required|(^|[^a-z])denied:|access to the resource is denied|access denied|\b401\b|\b403 forbidden|no basic auth credentials|incorrect username or password|invalid username/password`)
