package deploy_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestAlertRules checks deploy/prometheus/batteryswap.rules.yml with a real
// promtool: the file parses, and each alert fires (with its labels and
// text) on the series of batteryswap.rules_test.yml that should fire it, and
// stays quiet on the ones beside them that should not.
func TestAlertRules(t *testing.T) {
	bin, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("REQUIRE_SERVICES") == "1" {
			t.Fatal("promtool is not installed and REQUIRE_SERVICES=1 (apt-get install prometheus)")
		}
		t.Skip("promtool not installed")
	}
	for _, args := range [][]string{
		{"check", "rules", "batteryswap.rules.yml"},
		{"test", "rules", "batteryswap.rules_test.yml"},
	} {
		cmd := exec.Command(bin, args...)
		cmd.Dir = "prometheus"
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}
