package main

import (
	"strings"
	"testing"

	"github.com/stagehand-dev/stagehand/internal/portalsim"
)

func TestParsePortal(t *testing.T) {
	env := map[string]string{"PORTAL_DB_PASSWORD": "s3cret"}
	getenv := func(k string) string { return env[k] }
	got, err := parsePortal("portal/backstage/backend=7007,client=mysql2,host=127.0.0.1,port=3306,user=stagehand,passwordEnv=PORTAL_DB_PASSWORD", getenv)
	if err != nil {
		t.Fatal(err)
	}
	want := portalsim.Portal{Namespace: "portal", Deployment: "backstage", Container: "backend", Port: 7007,
		DB: portalsim.Database{Client: "mysql2", Host: "127.0.0.1", Port: 3306, User: "stagehand", Password: "s3cret"}}
	if got != want {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
	if _, err := parsePortal("p/b/c=7007,client=pg,host=h,port=5432,user=postgres", getenv); err != nil {
		t.Errorf("pg without password: %v", err)
	}

	for spec, wantErr := range map[string]string{
		"p/b/c=7007,client=pg,host=h,port=5432,user=u,password=hunter2": "not accepted on the command line",
		"p/b/c=7007,client=pg,host=h,port=5432,user=u,passwordEnv=NOPE": "$NOPE (passwordEnv) is empty",
		"p/b=7007,client=pg,host=h,port=5432,user=u":                    "ns/deployment/container",
		"p/b/c=web,client=pg,host=h,port=5432,user=u":                   `service port "web"`,
		"p/b/c=7007,client=sqlite,host=h,port=5432,user=u":              "want pg or mysql2",
		"p/b/c=7007,client=pg,host=h,port=5432":                         "host, port and user are required",
		"p/b/c=7007,client=pg,host=h,port=5432,user=u,tls=on":           `unknown key "tls"`,
		"p/b/c=7007,client=pg,client=mysql2,host=h,port=1,user=u":       "client given twice",
		"p/b/c": "want ns/deployment/container=PORT",
	} {
		_, err := parsePortal(spec, getenv)
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("%s: %v, want %q", spec, err, wantErr)
		}
		if err != nil && strings.Contains(err.Error(), "hunter2") {
			t.Errorf("error repeats the inline password: %v", err)
		}
	}
}
