package lab

import (
	"fmt"
	"os/exec"
)

// Run runs cmd (built with exec.Command or exec.CommandContext, not with
// Command) directly inside node's namespace and waits for it: it is forked
// from a thread that has entered the namespace, so no "ip netns exec"
// process comes first. That matters to whoever measures the child: its
// wait4 rusage (peak RSS in particular, which survives exec) is then the
// tool's own. The forking thread stays alive until the child is reaped, so
// SysProcAttr.Pdeathsig (sent when that thread dies) works as usual.
func (l *Lab) Run(node string, cmd *exec.Cmd) error {
	started := false
	err := l.inNamespace(node, func() error {
		if err := cmd.Start(); err != nil {
			return err
		}
		started = true
		return cmd.Wait()
	})
	if err != nil && !started {
		return fmt.Errorf("start %s in %s: %w", cmd.Path, l.Namespace(node), err)
	}
	return err
}
