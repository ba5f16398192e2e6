# Installs the npm dependencies from the lock file when they are missing or older than it.
ensure_npm_deps() {
  if [[ -L node_modules ]]; then
    # A link to another checkout's packages (a git worktree sharing them): npm ci would empty
    # the other checkout's node_modules under everything running from it. Its owner installs.
    return 0
  fi
  if [[ ! -f node_modules/.package-lock.json || package-lock.json -nt node_modules/.package-lock.json ]]; then
    echo "Installing npm dependencies (npm ci)..." >&2
    npm ci --no-audit --no-fund --loglevel=error
  fi
}
