#!/bin/sh
# Refresh the front-end libraries vendored under static/vendor/ from their npm packages.
#
# The chat page loads nothing from a CDN at run time: each library is a browser build copied out
# of its npm package, with the package's licence and a VERSION file naming what was copied.
# Usage: static/vendor/refresh.sh [markdown-it-version] [dompurify-version]
# (defaults: the versions in the VERSION files; "latest" takes the newest release). Review the
# diff, run tests/browser/test_chat_rendering.py, and commit the result.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
md_version=${1:-$(cat "$here/markdown-it/VERSION" 2>/dev/null || echo latest)}
purify_version=${2:-$(cat "$here/dompurify/VERSION" 2>/dev/null || echo latest)}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# fetch NAME VERSION: unpack the package's tarball into $work/NAME; print the exact version.
fetch() {
    tarball=$(cd "$work" && npm pack --silent "$1@$2")
    mkdir -p "$work/$1"
    tar -xzf "$work/$tarball" -C "$work/$1"
    sed -n 's/^  "version": "\(.*\)",$/\1/p' "$work/$1/package/package.json"
}

# copy FROM TO: a build file without its sourceMappingURL line (the maps are not shipped, and a
# dangling reference would make a hashed static storage fail at collectstatic).
copy() {
    grep -v '^//# sourceMappingURL=' "$1" > "$2"
}

version=$(fetch markdown-it "$md_version")
mkdir -p "$here/markdown-it"
copy "$work/markdown-it/package/dist/browser/markdown-it.esm.min.mjs" \
    "$here/markdown-it/markdown-it.esm.min.mjs"
cp "$work/markdown-it/package/LICENSE" "$here/markdown-it/LICENSE"
echo "$version" > "$here/markdown-it/VERSION"
echo "markdown-it $version"

version=$(fetch dompurify "$purify_version")
mkdir -p "$here/dompurify"
copy "$work/dompurify/package/dist/purify.es.mjs" "$here/dompurify/purify.es.mjs"
# DOMPurify is dual licensed (Apache-2.0 or MPL-2.0): both texts travel with it.
cp "$work/dompurify/package/LICENSE" "$here/dompurify/LICENSE"
if [ -f "$work/dompurify/package/LICENSE-MPL" ]; then
    cp "$work/dompurify/package/LICENSE-MPL" "$here/dompurify/LICENSE-MPL"
fi
echo "$version" > "$here/dompurify/VERSION"
echo "dompurify $version"
