// compose-check loads Docker Compose files the way `docker compose` does (compose-go: merge,
// interpolation, the Compose schema), so that infra's compose files are checked on a machine
// without a Docker engine. With -state DIR, every file a service names under secure/ must
// exist in DIR/secure, as `infra/regions secure-files` makes it.
//
//	go run ./infra/compose-check [-state DIR] FILE...
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/compose-spec/compose-go/v2/cli"
)

// A path relative to the state folder, inside the secure folder, as the services name them.
var securePath = regexp.MustCompile(`secure/[A-Za-z0-9._/-]+`)

func main() {
	state := flag.String("state", "", "a state folder whose secure/ the services' files must be in")
	flag.Parse()
	if flag.NArg() == 0 {
		fail("usage: compose-check [-state DIR] FILE...")
	}
	opts, err := cli.NewProjectOptions(flag.Args(), cli.WithOsEnv, cli.WithName("tidemark"))
	if err != nil {
		fail(err.Error())
	}
	project, err := opts.LoadProject(context.Background())
	if err != nil {
		fail(err.Error())
	}
	names := project.ServiceNames()
	sort.Strings(names)
	missing := 0
	for _, name := range names {
		service := project.Services[name]
		words := append([]string{}, service.Command...)
		if service.HealthCheck != nil {
			words = append(words, service.HealthCheck.Test...)
		}
		if *state == "" {
			continue
		}
		for _, word := range words {
			for _, path := range securePath.FindAllString(word, -1) {
				// A name built in the shell (acls-$${region}) is checked by its stem.
				path = strings.TrimRight(path, "-")
				matches, _ := filepath.Glob(filepath.Join(*state, path) + "*")
				if len(matches) == 0 {
					fmt.Fprintf(os.Stderr, "service %s: %s is not in %s\n", name, path, *state)
					missing++
				}
			}
		}
	}
	if missing > 0 {
		os.Exit(1)
	}
	fmt.Printf("%s: %d services (%s)\n", strings.Join(flag.Args(), " + "), len(names), strings.Join(names, ", "))
}

func fail(message string) {
	fmt.Fprintln(os.Stderr, "compose-check:", message)
	os.Exit(1)
}
