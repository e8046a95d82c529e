/** The mission's CiliumNetworkPolicy, byte for byte: no namespace, selected by service account, port 5000. */
export const BLOG_POLICY = `apiVersion: "cilium.io/v2"
kind: CiliumNetworkPolicy
metadata:
  name: "service-account"
spec:
  endpointSelector:
    matchLabels:
      io.cilium.k8s.policy.serviceaccount: helloworld
  ingress:
  - fromEndpoints:
    - matchLabels:
        io.cilium.k8s.policy.serviceaccount: sleep
    toPorts:
    - ports:
      - port: "5000"
        protocol: TCP
      rules:
        http:
        - method: GET
          path: "/hello"
`;
