// Package deploy is istiod-lite's waypoint deployer. For every waypoint
// Gateway that translation lists (translate.Waypoint) it keeps a
// ServiceAccount, a Service (HBONE port 15008) and a Deployment running the
// waypoint image, all named after the Gateway, in its namespace, owned by it
// (controller ownerReference with blockOwnerDeletion) and labelled
// gateway.networking.k8s.io/gateway-name and app.kubernetes.io/managed-by=
// istiod-lite. The waypoint pods carry warren.io/dataplane-mode=none: they
// speak HBONE themselves and must not be captured.
//
// Objects are written with server-side apply (field manager istiod-lite),
// only when the rendered configuration or the live object changed; drift is
// corrected from the deployer's own informers; objects of Gateways that are
// gone are deleted explicitly (garbage collection does it too in a real
// cluster, but not in envtest, and not for a Gateway that merely changed
// class). An object of the same name that istiod-lite does not manage is
// never touched.
//
// It owns these three kinds of objects and nothing else: no status writes
// (the Gateway's Programmed condition comes from translation reading the
// Deployment), no translation, no file mode.
package deploy
