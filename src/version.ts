/** meshca's version (package.json's), for `--version`, the default sidecar image tag and injection status. */
export const VERSION = '0.1.0';
