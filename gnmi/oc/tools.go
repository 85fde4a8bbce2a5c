//go:build tools

package oc

// The generator is imported here, behind a build tag that is never set,
// only so that go.mod pins its version: go generate then runs exactly the
// ygot the rest of the module builds against.
import _ "github.com/openconfig/ygot/generator"
