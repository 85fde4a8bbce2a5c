//go:build race

package e2e

// raceBuild: the test binary runs under the race detector.
const raceBuild = true
