// Package enginetest starts a real image engine and real registries for
// tests: podman's Docker-Engine-API service (which builds Dockerfiles with
// RUN steps through runc) and Debian's docker-registry (distribution 2.8.2),
// one open and one behind htpasswd basic auth, all in a scratch directory
// that Stop removes. Nothing is pulled from outside: the base image is built
// locally from busybox-static and imported through the Engine API.
//
// The recipe is the one in ../shared/TESTENV.md ("Images and registries"):
// podman's default runtime (crun) fails every RUN here, so the service runs
// with runc, cgroupfs, the vfs storage driver and ulimits no higher than the
// machine's hard limits. Every path podman would otherwise share with other
// instances (storage, its per-boot tmp dir, locks, events, image copy temp
// files) points into the scratch directory, so packages whose tests run at
// the same time each get an engine of their own.
//
// A missing program is a failure with an install hint, never a skip; only
// under `go test -short` (the unit tier) Shared and New skip before starting
// anything.
package enginetest

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/jsonmessage"
	"golang.org/x/crypto/bcrypt"

	"github.com/stagehand-dev/stagehand/internal/localenv"
)

// InstallHint tells a person how to get the programs the engine needs.
const InstallHint = "install them with `apt-get install -y podman runc busybox-static docker-registry`"

// BaseImage is the local base image every Env has: /bin/busybox from
// busybox-static and /bin/sh linked to it. Dockerfiles in tests start FROM it.
const BaseImage = "localhost/stagehand-busybox:test"

// Env is one running podman service with two registries.
type Env struct {
	// Host is the Docker Engine API address: unix://<dir>/podman.sock.
	Host string
	// RegistryAddr is the open registry, 127.0.0.1:<port> (plain HTTP).
	RegistryAddr string
	// AuthRegistryAddr is the registry behind htpasswd basic auth
	// (plain HTTP: distribution 2.8.2 accepts htpasswd without TLS).
	AuthRegistryAddr string
	// Username and Password are the AuthRegistryAddr's only account.
	Username, Password string
	// BaseImage is the local busybox image (the BaseImage constant).
	BaseImage string
	// Dir is the scratch directory holding everything.
	Dir string

	podman     *localenv.Process
	registries []*localenv.Process
	client     *client.Client

	stopOnce sync.Once
	stopErr  error
}

type programs struct{ podman, runc, registry, busybox string }

func findPrograms() (programs, error) {
	var p programs
	var missing []string
	for _, x := range []struct {
		name string
		dst  *string
	}{{"podman", &p.podman}, {"runc", &p.runc}, {"docker-registry", &p.registry}, {"busybox", &p.busybox}} {
		path, err := exec.LookPath(x.name)
		if err != nil {
			// runc lives in /usr/sbin, which is not on every PATH.
			if _, serr := os.Stat("/usr/sbin/" + x.name); serr == nil {
				path, err = "/usr/sbin/"+x.name, nil
			}
		}
		if err != nil {
			missing = append(missing, x.name)
			continue
		}
		*x.dst = path
	}
	if len(missing) > 0 {
		return p, fmt.Errorf("enginetest: %s not found; %s", strings.Join(missing, ", "), InstallHint)
	}
	// Debian's dynamically linked busybox would not run inside an image
	// that holds nothing else.
	if f, err := elf.Open(p.busybox); err == nil {
		defer f.Close()
		for _, prog := range f.Progs {
			if prog.Type == elf.PT_INTERP {
				return p, fmt.Errorf("enginetest: %s is dynamically linked; the base image needs busybox-static: %s", p.busybox, InstallHint)
			}
		}
	}
	return p, nil
}

// Start starts podman's service and two registries in a new scratch
// directory and imports the base image. The caller must Stop it.
func Start(ctx context.Context) (_ *Env, err error) {
	progs, err := findPrograms()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "enginetest-")
	if err != nil {
		return nil, fmt.Errorf("enginetest: scratch dir: %w", err)
	}
	e := &Env{Dir: dir, BaseImage: BaseImage, Username: "stagehand", Password: "enginetest-" + strconv.FormatInt(time.Now().UnixNano(), 36)}
	defer func() {
		if err != nil {
			_ = e.Stop()
		}
	}()
	if e.RegistryAddr, err = e.startRegistry(ctx, progs.registry, "open", false); err != nil {
		return nil, err
	}
	if e.AuthRegistryAddr, err = e.startRegistry(ctx, progs.registry, "auth", true); err != nil {
		return nil, err
	}
	if err := e.startPodman(ctx, progs); err != nil {
		return nil, err
	}
	if err := e.importBase(ctx, progs.busybox); err != nil {
		return nil, err
	}
	return e, nil
}

// startRegistry runs docker-registry on a free port, retrying on another
// port when one was taken between picking and binding.
func (e *Env) startRegistry(ctx context.Context, path, name string, auth bool) (string, error) {
	root := filepath.Join(e.Dir, "registry-"+name)
	if err := os.MkdirAll(filepath.Join(root, "data"), 0o755); err != nil {
		return "", err
	}
	authConf := ""
	if auth {
		hash, err := bcrypt.GenerateFromPassword([]byte(e.Password), bcrypt.MinCost)
		if err != nil {
			return "", err
		}
		htpasswd := filepath.Join(root, "htpasswd")
		if err := os.WriteFile(htpasswd, []byte(e.Username+":"+string(hash)+"\n"), 0o600); err != nil {
			return "", err
		}
		authConf = fmt.Sprintf("auth:\n  htpasswd:\n    realm: enginetest\n    path: %s\n", htpasswd)
	}
	var addr string
	err := localenv.OnFreePort(ctx, func(port int) error {
		addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		conf := filepath.Join(root, "config.yml")
		// The debug server and the health checker stay off: they would
		// bind more ports and log noise.
		content := fmt.Sprintf("version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: %s\n  delete:\n    enabled: true\nhttp:\n  addr: %s\n%s",
			filepath.Join(root, "data"), addr, authConf)
		if err := os.WriteFile(conf, []byte(content), 0o644); err != nil {
			return err
		}
		p := &localenv.Process{Name: "docker-registry " + name, LogPath: filepath.Join(root, "registry.log"), Path: path, Args: []string{"serve", conf}}
		if err := p.Start(); err != nil {
			return err
		}
		e.registries = append(e.registries, p)
		if err := waitHTTP(ctx, p, "http://"+addr+"/v2/"); err != nil {
			_ = p.Stop(time.Second)
			return err
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("enginetest: start the %s registry: %w", name, err)
	}
	return addr, nil
}

// waitHTTP waits until url answers (any status: 401 means an auth'd
// registry is up) or the process exits.
func waitHTTP(ctx context.Context, p *localenv.Process, url string) error {
	deadline := time.Now().Add(20 * time.Second)
	hc := &http.Client{Timeout: time.Second}
	for {
		resp, err := hc.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized {
				return nil
			}
		}
		if !p.Running() {
			return fmt.Errorf("%s exited:\n%s", p.Name, p.LogTail(20))
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s did not answer %s in time: %v\n%s", p.Name, url, err, p.LogTail(20))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (e *Env) startPodman(ctx context.Context, progs programs) error {
	s := e.Dir
	for _, d := range []string{"storage", "run", "tmp", "libpod", "static", "volumes"} {
		if err := os.MkdirAll(filepath.Join(s, d), 0o755); err != nil {
			return err
		}
	}
	// lock_type = "file": the default shm locks live in one segment shared
	// by every podman on the machine, and a fresh tmp_dir makes podman
	// "refresh" (free every lock) as if the machine had rebooted.
	containersConf := fmt.Sprintf(`[containers]
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = %q
tmp_dir = %q
static_dir = %q
volume_path = %q
image_copy_tmp_dir = %q
lock_type = "file"

[engine.runtimes]
runc = [%q]
`, filepath.Join(s, "events.log"), filepath.Join(s, "libpod"), filepath.Join(s, "static"), filepath.Join(s, "volumes"),
		filepath.Join(s, "tmp"), progs.runc)
	storageConf := fmt.Sprintf("[storage]\ndriver = \"vfs\"\ngraphroot = %q\nrunroot = %q\n", filepath.Join(s, "storage"), filepath.Join(s, "run"))
	// podman, unlike dockerd, does not treat loopback registries as
	// insecure: without these entries a push fails with "server gave HTTP
	// response to HTTPS client".
	registriesConf := "unqualified-search-registries = []\n"
	for _, addr := range []string{e.RegistryAddr, e.AuthRegistryAddr} {
		registriesConf += fmt.Sprintf("\n[[registry]]\nlocation = %q\ninsecure = true\n", addr)
	}
	files := map[string]string{"containers.conf": containersConf, "storage.conf": storageConf, "registries.conf": registriesConf}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(s, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	sock := filepath.Join(s, "podman.sock")
	env := []string{
		"CONTAINERS_CONF=" + filepath.Join(s, "containers.conf"),
		"CONTAINERS_STORAGE_CONF=" + filepath.Join(s, "storage.conf"),
		"CONTAINERS_REGISTRIES_CONF=" + filepath.Join(s, "registries.conf"),
		// An auth file of the worker's user must not leak into pushes.
		"REGISTRY_AUTH_FILE=" + filepath.Join(s, "auth.json"),
		"TMPDIR=" + filepath.Join(s, "tmp"),
		"XDG_RUNTIME_DIR=" + filepath.Join(s, "run"),
	}
	p := &localenv.Process{Name: "podman system service", LogPath: filepath.Join(s, "podman.log"), Env: env, Path: progs.podman,
		Args: []string{"system", "service", "--time=0", "unix://" + sock}}
	if err := p.Start(); err != nil {
		return err
	}
	e.podman = p
	e.Host = "unix://" + sock
	c, err := client.NewClientWithOpts(client.WithHost(e.Host), client.WithAPIVersionNegotiation())
	if err != nil {
		return fmt.Errorf("enginetest: docker client for %s: %w", e.Host, err)
	}
	e.client = c
	deadline := time.Now().Add(30 * time.Second)
	for {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := c.Ping(pctx)
		cancel()
		if err == nil {
			return nil
		}
		if !p.Running() {
			return fmt.Errorf("enginetest: podman system service exited:\n%s", p.LogTail(30))
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("enginetest: podman system service did not answer on %s: %v\n%s", sock, err, p.LogTail(30))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// importBase builds the base image's root filesystem as a tar in memory
// (busybox-static is about 2 MB) and imports it through the Engine API.
func (e *Env) importBase(ctx context.Context, busybox string) error {
	data, err := os.ReadFile(busybox)
	if err != nil {
		return fmt.Errorf("enginetest: read %s: %w", busybox, err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	now := time.Now()
	hdrs := []*tar.Header{
		{Name: "bin/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: now},
		{Name: "tmp/", Typeflag: tar.TypeDir, Mode: 0o1777, ModTime: now},
		{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: now},
		{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(data)), ModTime: now},
		{Name: "bin/sh", Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777, ModTime: now},
	}
	for _, h := range hdrs {
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write(data); err != nil {
				return err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	rc, err := e.client.ImageImport(ctx, image.ImportSource{Source: &buf, SourceName: "-"}, BaseImage, image.ImportOptions{})
	if err != nil {
		return fmt.Errorf("enginetest: import %s: %w", BaseImage, err)
	}
	defer rc.Close()
	if err := drainStream(rc); err != nil {
		return fmt.Errorf("enginetest: import %s: %w", BaseImage, err)
	}
	if _, err := e.client.ImageInspect(ctx, BaseImage); err != nil {
		return fmt.Errorf("enginetest: imported %s is not there: %w", BaseImage, err)
	}
	return nil
}

// drainStream reads a JSON message stream to its end and returns the first
// error message in it.
func drainStream(r io.Reader) error {
	dec := json.NewDecoder(r)
	for {
		var m jsonmessage.JSONMessage
		if err := dec.Decode(&m); err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
		if m.Error != nil {
			return errors.New(m.Error.Message)
		}
		if m.ErrorMessage != "" {
			return errors.New(m.ErrorMessage)
		}
	}
}

// Client returns a Docker API client connected to the engine, for tests
// that look at images directly.
func (e *Env) Client() *client.Client { return e.client }

// Stop kills the service and the registries (whole process groups) and
// removes the scratch directory. It is safe to call more than once.
func (e *Env) Stop() error {
	e.stopOnce.Do(func() {
		var errs []error
		if e.client != nil {
			e.client.Close()
		}
		if e.podman != nil {
			errs = append(errs, e.podman.Stop(5*time.Second))
		}
		for _, r := range e.registries {
			errs = append(errs, r.Stop(5*time.Second))
		}
		errs = append(errs, removeScratch(e.Dir))
		e.stopErr = errors.Join(errs...)
	})
	return e.stopErr
}

// removeScratch removes dir, first unmounting anything a killed build left
// mounted under it and making the read-only directories that vfs copies
// out of image layers writable again (RemoveAll cannot empty them).
func removeScratch(dir string) error {
	if dir == "" {
		return nil
	}
	for _, m := range mountsUnder(dir) {
		_ = syscall.Unmount(m, syscall.MNT_DETACH)
	}
	_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = os.Chmod(path, 0o700)
		}
		return nil
	})
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("enginetest: remove %s: %w", dir, err)
	}
	return nil
}

// mountsUnder lists the mount points at or under dir, deepest first.
func mountsUnder(dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMount(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

var shared = localenv.Shared[*Env]{
	Name:    "the image engine",
	Needs:   "podman's Docker-API service and docker-registry",
	Timeout: 2 * time.Minute,
	Start:   Start,
	Stop:    (*Env).Stop,
}

// Main runs a package's tests with a shared Env started lazily by Shared
// and stopped after all tests finish. Use it from TestMain:
//
//	func TestMain(m *testing.M) { enginetest.Main(m) }
func Main(m *testing.M) { os.Exit(shared.Main(m)) }

// Shared returns the package's shared Env, starting it on first use. It
// fails the test (never skips) when the engine cannot start; only under
// -short it skips before starting anything. Without Main in TestMain it is
// stopped when the calling test ends (and started again for the next).
func Shared(t testing.TB) *Env {
	t.Helper()
	return shared.Shared(t)
}

// New starts an Env owned by one test and stops it when the test ends;
// under -short it skips the test instead.
func New(t testing.TB) *Env {
	t.Helper()
	return shared.New(t)
}
