// Command warren-cni is Warren's chained CNI plugin (CNI spec 1.0): put it
// after the pod network's plugins in the node's conflist,
//
//	{"type": "warren-cni", "agentSocket": "/var/run/warren/cni.sock", "failOpen": false}
//
// and every pod sandbox asks the node agent to capture the pod's traffic
// before its containers start. The plugin itself lives in redirect/cni.
package main

import (
	"github.com/containernetworking/cni/pkg/skel"

	"github.com/warren-mesh/warren/redirect/cni"
)

func main() {
	p := &cni.Plugin{}
	skel.PluginMainFuncs(p.Funcs(), cni.Versions, "warren-cni: captures pod traffic into ztunnel (Warren)")
}
