// Command temporal-tls runs a single-process Temporal server whose frontend
// requires TLS (and, by default, a client certificate: mutual TLS), for the
// tests of Stagehand's secured connections. The pinned Temporal CLI's
// `server start-dev` has no TLS options (its dev server is plain gRPC), so we
// build the same server (go.temporal.io/server at the version CLI v1.5.1
// embeds) with the frontend's TLS configured, in a module of its own so the
// main go.mod never pulls in the server's dependencies.
//
// The configuration follows the CLI's dev server (temporalcli/devserver,
// MIT licence): SQLite persistence, one history shard, every service in one
// process. What differs: the frontend listens with TLS; the system worker
// (which calls the frontend like any client) presents its own client
// certificate; and, with --api-key-file, a gRPC interceptor requires
// `authorization: Bearer <key>` on every workflow-service request except
// the system worker's, which is how the tests prove an API key reaches the
// server.
//
// It prints "temporal-tls ready on HOST:PORT" on stdout once the frontend
// accepts connections and runs until SIGINT/SIGTERM.
package main

import (
	"context"
	"crypto/subtle"
	"crypto/x509"
	"encoding/pem"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/server/common/authorization"
	"go.temporal.io/server/common/cluster"
	"go.temporal.io/server/common/config"
	"go.temporal.io/server/common/dynamicconfig"
	"go.temporal.io/server/common/log"
	"go.temporal.io/server/common/membership/static"
	sqliteplugin "go.temporal.io/server/common/persistence/sql/sqlplugin/sqlite"
	"go.temporal.io/server/common/primitives"
	sqliteschema "go.temporal.io/server/schema/sqlite"
	"go.temporal.io/server/temporal"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

type options struct {
	ip, dbFile              string
	port                    int
	cert, key, clientCA     string
	workerCert, workerKey   string
	serverName              string
	noClientAuth            bool
	apiKeyFile              string
	namespaces, searchAttrs stringList
	logLevel                string
}

func main() {
	var o options
	flag.StringVar(&o.ip, "ip", "127.0.0.1", "IP address the services bind to")
	flag.IntVar(&o.port, "port", 7233, "frontend gRPC port")
	flag.StringVar(&o.dbFile, "db-filename", "", "SQLite file (default: in memory)")
	flag.StringVar(&o.cert, "tls-cert", "", "frontend server certificate (PEM)")
	flag.StringVar(&o.key, "tls-key", "", "frontend server key (PEM)")
	flag.StringVar(&o.clientCA, "tls-client-ca", "", "CA that client certificates must chain to (PEM)")
	flag.BoolVar(&o.noClientAuth, "no-client-auth", false, "accept clients without a certificate (server-side TLS only)")
	flag.StringVar(&o.workerCert, "system-worker-cert", "", "client certificate the system worker presents to the frontend")
	flag.StringVar(&o.workerKey, "system-worker-key", "", "its key")
	flag.StringVar(&o.serverName, "server-name", "localhost", "name the system worker expects in the frontend's certificate")
	flag.StringVar(&o.apiKeyFile, "api-key-file", "", "file holding an API key every client request must carry as 'authorization: Bearer <key>'")
	flag.Var(&o.namespaces, "namespace", "extra namespace to create (repeatable); 'default' always exists")
	flag.Var(&o.searchAttrs, "search-attribute", "NAME=TYPE to register (repeatable), as in `temporal server start-dev`")
	flag.StringVar(&o.logLevel, "log-level", "warn", "server log level")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "temporal-tls:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	if o.cert == "" || o.key == "" || o.clientCA == "" {
		return fmt.Errorf("--tls-cert, --tls-key and --tls-client-ca are required")
	}
	if !o.noClientAuth && (o.workerCert == "" || o.workerKey == "") {
		return fmt.Errorf("with client authentication on, the system worker needs --system-worker-cert and --system-worker-key")
	}
	var interceptors []grpc.UnaryServerInterceptor
	if o.apiKeyFile != "" {
		raw, err := os.ReadFile(o.apiKeyFile)
		if err != nil {
			return fmt.Errorf("reading --api-key-file: %w", err)
		}
		key := strings.TrimSpace(string(raw))
		if key == "" {
			return fmt.Errorf("--api-key-file %s is empty", o.apiKeyFile)
		}
		if o.noClientAuth {
			return fmt.Errorf("--api-key-file needs client authentication on: the system worker is told apart by its certificate")
		}
		systemCN, err := certCN(o.workerCert)
		if err != nil {
			return fmt.Errorf("--system-worker-cert: %w", err)
		}
		interceptors = append(interceptors, requireAPIKey(key, systemCN))
	}
	conf, err := serverConfig(o)
	if err != nil {
		return err
	}
	logger := log.NewZapLogger(log.BuildZapLogger(log.Config{Level: o.logLevel, Format: "console"}))
	authorizer, err := authorization.GetAuthorizerFromConfig(&conf.Global.Authorization)
	if err != nil {
		return err
	}
	claimMapper, err := authorization.GetClaimMapperFromConfig(&conf.Global.Authorization, logger)
	if err != nil {
		return err
	}
	host := func(svc primitives.ServiceName) static.Hosts {
		return static.SingleLocalHost(fmt.Sprintf("%s:%d", o.ip, conf.Services[string(svc)].RPC.GRPCPort))
	}
	dyn := dynamicconfig.StaticClient{
		dynamicconfig.FrontendMaxNamespaceVisibilityRPSPerInstance.Key(): 100,
	}
	opts := []temporal.ServerOption{
		temporal.WithConfig(conf),
		temporal.ForServices(temporal.DefaultServices),
		temporal.WithStaticHosts(map[primitives.ServiceName]static.Hosts{
			primitives.FrontendService: host(primitives.FrontendService),
			primitives.MatchingService: host(primitives.MatchingService),
			primitives.HistoryService:  host(primitives.HistoryService),
			primitives.WorkerService:   host(primitives.WorkerService),
		}),
		temporal.WithLogger(logger),
		temporal.WithAuthorizer(authorizer),
		temporal.WithClaimMapper(func(*config.Config) authorization.ClaimMapper { return claimMapper }),
		temporal.WithDynamicConfigClient(dyn),
	}
	if len(interceptors) > 0 {
		opts = append(opts, temporal.WithChainedFrontendGrpcInterceptors(interceptors...))
	}
	srv, err := temporal.NewServer(opts...)
	if err != nil {
		return fmt.Errorf("creating server: %w", err)
	}
	if err := srv.Start(); err != nil {
		return fmt.Errorf("starting server: %w", err)
	}
	fmt.Printf("temporal-tls ready on %s:%d\n", o.ip, o.port)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	return srv.Stop()
}

// requireAPIKey refuses any workflow-service request that does not carry
// the key as a bearer token, except from the server's own system worker
// (identified by its client certificate's common name), which
// authenticates with that certificate instead.
func requireAPIKey(key, systemCN string) grpc.UnaryServerInterceptor {
	want := []byte("Bearer " + key)
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if !strings.HasPrefix(info.FullMethod, "/temporal.api.workflowservice.") || peerCN(ctx) == systemCN {
			return handler(ctx, req)
		}
		md, _ := metadata.FromIncomingContext(ctx)
		for _, got := range md.Get("authorization") {
			if subtle.ConstantTimeCompare([]byte(got), want) == 1 {
				return handler(ctx, req)
			}
		}
		return nil, status.Error(codes.Unauthenticated, "temporal-tls: request lacks the expected API key (authorization: Bearer ...)")
	}
}

func peerCN(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return ""
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.PeerCertificates) == 0 {
		return ""
	}
	return info.State.PeerCertificates[0].Subject.CommonName
}

func certCN(path string) (string, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	block, _ := pem.Decode(raw)
	if block == nil {
		return "", fmt.Errorf("%s: no PEM certificate", path)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return cert.Subject.CommonName, nil
}

func serverConfig(o options) (*config.Config, error) {
	var conf config.Config
	conf.Global.Membership.MaxJoinDuration = 30_000_000_000 // 30 s
	conf.Global.Membership.BroadcastAddress = o.ip
	conf.Global.TLS.Frontend.Server = config.ServerTLS{
		CertFile:          o.cert,
		KeyFile:           o.key,
		ClientCAFiles:     []string{o.clientCA},
		RequireClientAuth: !o.noClientAuth,
	}
	// The system worker is a client of the frontend like any other, so it
	// must trust the frontend's CA and (under mTLS) present a certificate.
	conf.Global.TLS.SystemWorker = config.WorkerTLS{
		CertFile: o.workerCert,
		KeyFile:  o.workerKey,
		Client: config.ClientTLS{
			ServerName:  o.serverName,
			RootCAFiles: []string{o.clientCA},
		},
	}
	conf.Persistence.DefaultStore = "sqlite-default"
	conf.Persistence.VisibilityStore = "sqlite-default"
	conf.Persistence.NumHistoryShards = 1
	sqlConf, err := sqlConfig(o)
	if err != nil {
		return nil, err
	}
	conf.Persistence.DataStores = map[string]config.DataStore{"sqlite-default": {SQL: sqlConf}}
	frontendAddr := fmt.Sprintf("%s:%d", o.ip, o.port)
	httpPort, err := freePort(o.ip)
	if err != nil {
		return nil, err
	}
	conf.ClusterMetadata = &cluster.Config{
		FailoverVersionIncrement: 10,
		MasterClusterName:        "active",
		CurrentClusterName:       "active",
		ClusterInformation: map[string]cluster.ClusterInformation{
			"active": {
				Enabled:                true,
				InitialFailoverVersion: 1,
				RPCAddress:             frontendAddr,
				HTTPAddress:            fmt.Sprintf("%s:%d", o.ip, httpPort),
				ClusterID:              "stagehand-tls-test",
			},
		},
	}
	conf.DCRedirectionPolicy.Policy = "noop"
	conf.Services = map[string]config.Service{}
	for _, name := range []string{"frontend", "history", "matching", "worker"} {
		var svc config.Service
		svc.RPC.BindOnIP = o.ip
		if name == "frontend" {
			svc.RPC.GRPCPort = o.port
			svc.RPC.HTTPPort = httpPort
		} else if svc.RPC.GRPCPort, err = freePort(o.ip); err != nil {
			return nil, err
		}
		conf.Services[name] = svc
	}
	conf.Archival.History.State = "disabled"
	conf.Archival.Visibility.State = "disabled"
	conf.NamespaceDefaults.Archival.History.State = "disabled"
	conf.NamespaceDefaults.Archival.Visibility.State = "disabled"
	conf.PublicClient.HostPort = frontendAddr
	return &conf, nil
}

func sqlConfig(o options) (*config.SQL, error) {
	conf := config.SQL{PluginName: sqliteplugin.PluginName}
	if o.dbFile == "" {
		conf.ConnectAttributes = map[string]string{"mode": "memory", "cache": "shared"}
		conf.DatabaseName = "stagehand-tls-" + strconv.Itoa(os.Getpid())
	} else {
		conf.ConnectAttributes = map[string]string{"mode": "rwc"}
		conf.DatabaseName = o.dbFile
		if _, err := os.Stat(o.dbFile); os.IsNotExist(err) {
			if _, err := os.Stat(filepath.Dir(o.dbFile)); err != nil {
				return nil, fmt.Errorf("directory for --db-filename: %w", err)
			}
			if err := sqliteschema.SetupSchema(&conf); err != nil {
				return nil, fmt.Errorf("setting up the SQLite schema: %w", err)
			}
		}
	}
	attrs := map[string]enums.IndexedValueType{}
	for _, sa := range o.searchAttrs {
		name, typ, ok := strings.Cut(sa, "=")
		v, err := enums.IndexedValueTypeFromString(typ)
		if !ok || err != nil {
			return nil, fmt.Errorf("--search-attribute %q: want NAME=TYPE (Text, Keyword, Int, Double, Bool, Datetime, KeywordList)", sa)
		}
		attrs[name] = v
	}
	names := append([]string{"default"}, o.namespaces...)
	var nss []*sqliteschema.NamespaceConfig
	for _, ns := range names {
		c, err := sqliteschema.NewNamespaceConfig("active", ns, false, attrs)
		if err != nil {
			return nil, fmt.Errorf("namespace %s: %w", ns, err)
		}
		nss = append(nss, c)
	}
	if err := sqliteschema.CreateNamespaces(&conf, nss...); err != nil {
		return nil, fmt.Errorf("creating namespaces: %w", err)
	}
	return &conf, nil
}
