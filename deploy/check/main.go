// Command check validates tidemark's deployment files (deploy/) as CI can without a cluster.
//
//	check -tidemark target/release/tidemark -extract DIR deploy
//
// The Kubernetes manifests are decoded strictly into the Kubernetes API's own Go types
// (k8s.io/api, as the API server's decoder would: an unknown or misspelt field, or a value of the
// wrong type, is an error), and their names, labels and ports are checked with apimachinery's
// validation. Then what the objects must agree on: the StatefulSet's Service is the headless one
// that publishes unready pods, the selectors select the pods, the probes name a port the
// container has, the hostfile lists one pod DNS name per replica in process order on the
// timely port, the pipeline's metrics port is the probes' port, and every flag the container
// and the systemd unit pass is one `tidemark run --help` lists. The ConfigMap's files are written
// to DIR, for `tidemark check DIR/pipeline.toml`.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"
)

type checker struct{ problems []string }

func (c *checker) fail(format string, args ...any) {
	c.problems = append(c.problems, fmt.Sprintf(format, args...))
}

func main() {
	tidemark := flag.String("tidemark", "target/release/tidemark", "the tidemark binary, whose `run --help` lists the flags")
	extract := flag.String("extract", "", "write the ConfigMap's files into this folder")
	flag.Parse()
	root := "deploy"
	if flag.NArg() > 0 {
		root = flag.Arg(0)
	}
	help, err := exec.Command(*tidemark, "run", "--help").Output()
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s run --help: %v\n", *tidemark, err)
		os.Exit(1)
	}
	c := &checker{}
	flags := knownFlags(string(help))
	c.kubernetes(filepath.Join(root, "kubernetes", "tidemark.yaml"), flags, *extract)
	c.systemd(filepath.Join(root, "systemd", "tidemark@.service"), flags)
	if len(c.problems) > 0 {
		for _, p := range c.problems {
			fmt.Fprintln(os.Stderr, p)
		}
		os.Exit(1)
	}
}

// knownFlags: every long flag `tidemark run --help` names.
func knownFlags(help string) map[string]bool {
	known := map[string]bool{}
	for _, m := range regexp.MustCompile(`--[a-z][a-z-]*`).FindAllString(help, -1) {
		known[m] = true
	}
	return known
}

// decodeStrict decodes one YAML document into out, refusing unknown fields.
func decodeStrict(doc []byte, out any) error {
	return yaml.UnmarshalStrict(doc, out)
}

func (c *checker) kubernetes(path string, flags map[string]bool, extract string) {
	text, err := os.ReadFile(path)
	if err != nil {
		c.fail("%v", err)
		return
	}
	var (
		sts      *appsv1.StatefulSet
		services = map[string]*corev1.Service{}
		maps     = map[string]*corev1.ConfigMap{}
	)
	for i, doc := range bytes.Split(text, []byte("\n---\n")) {
		var head struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
		}
		if err := yaml.Unmarshal(doc, &head); err != nil {
			c.fail("%s: document %d: %v", path, i+1, err)
			continue
		}
		where := fmt.Sprintf("%s: %s (document %d)", path, head.Kind, i+1)
		switch head.APIVersion + " " + head.Kind {
		case "apps/v1 StatefulSet":
			sts = &appsv1.StatefulSet{}
			if err := decodeStrict(doc, sts); err != nil {
				c.fail("%s: %v", where, err)
				sts = nil
			}
		case "v1 Service":
			s := &corev1.Service{}
			if err := decodeStrict(doc, s); err != nil {
				c.fail("%s: %v", where, err)
				continue
			}
			services[s.Name] = s
		case "v1 ConfigMap":
			m := &corev1.ConfigMap{}
			if err := decodeStrict(doc, m); err != nil {
				c.fail("%s: %v", where, err)
				continue
			}
			maps[m.Name] = m
		default:
			c.fail("%s: unexpected kind %q %q", where, head.APIVersion, head.Kind)
		}
	}
	if sts == nil {
		c.fail("%s: no StatefulSet", path)
		return
	}
	c.names(path, sts.Name, sts.Namespace, sts.Labels)
	for _, s := range services {
		c.names(path, s.Name, s.Namespace, s.Labels)
	}
	for _, m := range maps {
		c.names(path, m.Name, m.Namespace, m.Labels)
	}
	spec := sts.Spec
	pod := spec.Template
	if spec.Replicas == nil || *spec.Replicas < 1 {
		c.fail("StatefulSet %s: replicas must be set and at least 1", sts.Name)
		return
	}
	replicas := int(*spec.Replicas)
	if spec.PodManagementPolicy != appsv1.ParallelPodManagement {
		c.fail("StatefulSet %s: podManagementPolicy must be Parallel: process 0 cannot become ready before the others start", sts.Name)
	}
	if spec.Selector == nil || !subset(spec.Selector.MatchLabels, pod.Labels) {
		c.fail("StatefulSet %s: the selector does not select the pod template's labels", sts.Name)
	}
	svc := services[spec.ServiceName]
	switch {
	case svc == nil:
		c.fail("StatefulSet %s: serviceName %q is not a Service of this file", sts.Name, spec.ServiceName)
	case svc.Spec.ClusterIP != corev1.ClusterIPNone:
		c.fail("Service %s: must be headless (clusterIP: None), for the pods' DNS names", svc.Name)
	case !svc.Spec.PublishNotReadyAddresses:
		c.fail("Service %s: publishNotReadyAddresses must be true: the processes find each other before they are ready", svc.Name)
	case !subset(svc.Spec.Selector, pod.Labels):
		c.fail("Service %s: its selector does not select the StatefulSet's pods", svc.Name)
	}
	if len(pod.Spec.Containers) != 1 {
		c.fail("StatefulSet %s: expected one container", sts.Name)
		return
	}
	ctr := pod.Spec.Containers[0]
	ports := map[string]int32{}
	for _, p := range ctr.Ports {
		ports[p.Name] = p.ContainerPort
		for _, msg := range validation.IsValidPortName(p.Name) {
			c.fail("container %s: port name %q: %s", ctr.Name, p.Name, msg)
		}
	}
	if svc != nil {
		for _, p := range svc.Spec.Ports {
			if p.TargetPort.StrVal != "" && ports[p.TargetPort.StrVal] == 0 {
				c.fail("Service %s: port %s targets %q, which the container does not have", svc.Name, p.Name, p.TargetPort.StrVal)
			}
		}
	}
	for name, probe := range map[string]*corev1.Probe{"readinessProbe": ctr.ReadinessProbe, "livenessProbe": ctr.LivenessProbe} {
		if probe == nil || probe.HTTPGet == nil {
			c.fail("container %s: %s must be an httpGet on the metrics endpoint", ctr.Name, name)
			continue
		}
		if probe.HTTPGet.Port.StrVal != "metrics" || probe.HTTPGet.Path != "/healthz" {
			c.fail("container %s: %s must get /healthz on port metrics", ctr.Name, name)
		}
	}
	c.args("container "+ctr.Name, ctr.Args, flags)
	if value(ctr.Args, "--processes") != fmt.Sprint(replicas) {
		c.fail("container %s: --processes %s, but %d replicas", ctr.Name, value(ctr.Args, "--processes"), replicas)
	}
	if value(ctr.Args, "--process") != "$(PROCESS_INDEX)" || !indexFromOrdinal(ctr.Env) {
		c.fail("container %s: --process must be $(PROCESS_INDEX), from the pod-index label", ctr.Name)
	}
	// The hostfile and the pipeline come from the ConfigMap mounted where the flags say.
	var config *corev1.ConfigMap
	var mount string
	for _, v := range pod.Spec.Volumes {
		if v.ConfigMap != nil {
			config = maps[v.ConfigMap.Name]
			for _, m := range ctr.VolumeMounts {
				if m.Name == v.Name {
					mount = m.MountPath
				}
			}
		}
	}
	if config == nil || mount == "" {
		c.fail("StatefulSet %s: no ConfigMap of this file mounted in the container", sts.Name)
		return
	}
	hostfile := value(ctr.Args, "--hostfile")
	pipeline := ""
	if len(ctr.Args) > 1 {
		pipeline = ctr.Args[1]
	}
	for _, f := range []string{hostfile, pipeline} {
		if filepath.Dir(f) != mount || config.Data[filepath.Base(f)] == "" {
			c.fail("container %s: %s is not a file of ConfigMap %s mounted at %s", ctr.Name, f, config.Name, mount)
		}
	}
	hosts := strings.Fields(config.Data[filepath.Base(hostfile)])
	if len(hosts) != replicas {
		c.fail("ConfigMap %s: the hostfile has %d lines for %d replicas", config.Name, len(hosts), replicas)
	}
	for i, h := range hosts {
		want := fmt.Sprintf("%s-%d.%s.%s.svc.cluster.local:%d", sts.Name, i, spec.ServiceName, sts.Namespace, ports["timely"])
		if h != want {
			c.fail("ConfigMap %s: hostfile line %d is %q, expected pod %d's DNS name and the timely port: %q", config.Name, i+1, h, i, want)
		}
	}
	listen := regexp.MustCompile(`(?m)^\[metrics\]\s*\nlisten = "([^"]*):(\d+)"`).FindStringSubmatch(config.Data[filepath.Base(pipeline)])
	switch {
	case listen == nil:
		c.fail("ConfigMap %s: the pipeline has no [metrics] listen for the probes", config.Name)
	case listen[2] != fmt.Sprint(ports["metrics"]):
		c.fail("ConfigMap %s: the pipeline's metrics port %s is not the container's metrics port %d", config.Name, listen[2], ports["metrics"])
	case listen[1] != "0.0.0.0":
		c.fail("ConfigMap %s: metrics listen on %s, which the kubelet's probes cannot reach", config.Name, listen[1])
	}
	if extract != "" {
		if err := os.MkdirAll(extract, 0o755); err != nil {
			c.fail("%v", err)
			return
		}
		for name, data := range config.Data {
			if err := os.WriteFile(filepath.Join(extract, name), []byte(data), 0o644); err != nil {
				c.fail("%v", err)
			}
		}
	}
}

// names: a DNS-1123 name, a namespace, and valid labels.
func (c *checker) names(path, name, namespace string, labels map[string]string) {
	for _, msg := range validation.IsDNS1123Subdomain(name) {
		c.fail("%s: name %q: %s", path, name, msg)
	}
	if namespace == "" {
		c.fail("%s: %s has no namespace (the hostfile's DNS names need it)", path, name)
	}
	for k, v := range labels {
		for _, msg := range validation.IsQualifiedName(k) {
			c.fail("%s: %s: label %q: %s", path, name, k, msg)
		}
		for _, msg := range validation.IsValidLabelValue(v) {
			c.fail("%s: %s: label value %q: %s", path, name, v, msg)
		}
	}
}

// args: the first argument is the subcommand `run`, and every flag is one tidemark has.
func (c *checker) args(where string, args []string, flags map[string]bool) {
	if len(args) == 0 || args[0] != "run" {
		c.fail("%s: the arguments must start with `run`", where)
	}
	for _, a := range args {
		if strings.HasPrefix(a, "--") && !flags[strings.SplitN(a, "=", 2)[0]] {
			c.fail("%s: %s is not a flag of `tidemark run`", where, a)
		}
	}
}

func (c *checker) systemd(path string, flags map[string]bool) {
	text, err := os.ReadFile(path)
	if err != nil {
		c.fail("%v", err)
		return
	}
	var exec []string
	restart := ""
	for _, line := range strings.Split(string(text), "\n") {
		if v, ok := strings.CutPrefix(line, "ExecStart="); ok {
			exec = strings.Fields(v)
		}
		if v, ok := strings.CutPrefix(line, "Restart="); ok {
			restart = v
		}
	}
	if len(exec) < 2 {
		c.fail("%s: no ExecStart with arguments", path)
		return
	}
	if restart != "on-failure" {
		c.fail("%s: Restart=%s, expected on-failure", path, restart)
	}
	c.args(path, exec[1:], flags)
	if value(exec, "--process") != "%i" {
		c.fail("%s: --process must be %%i, the instance", path)
	}
}

// value: the argument after flag, or "".
func value(args []string, flag string) string {
	for i, a := range args {
		if a == flag && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

func subset(small, big map[string]string) bool {
	if len(small) == 0 {
		return false
	}
	for k, v := range small {
		if big[k] != v {
			return false
		}
	}
	return true
}

// indexFromOrdinal: PROCESS_INDEX comes from the pod-index label the StatefulSet controller sets.
func indexFromOrdinal(env []corev1.EnvVar) bool {
	for _, e := range env {
		if e.Name == "PROCESS_INDEX" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
			return e.ValueFrom.FieldRef.FieldPath == "metadata.labels['apps.kubernetes.io/pod-index']"
		}
	}
	return false
}
