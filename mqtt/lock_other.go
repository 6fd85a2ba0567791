//go:build !unix

package mqtt

import (
	"fmt"
	"os"
	"path/filepath"
)

// lockDir opens the lock file; advisory locking is only implemented on Unix.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, lockFileName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("mqtt: lock state directory: %w", err)
	}
	return f, nil
}
