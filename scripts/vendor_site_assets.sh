#!/usr/bin/env bash
# (Re)create site_assets/vendor/: the JavaScript and fonts the built site would otherwise take from
# public CDNs (require.js, the ipywidgets 8 HTML manager, MathJax 3), taken from the npm registry.
#
#     scripts/vendor_site_assets.sh          # needs node/npm and the npm registry; the result is committed
#
# Only what a page asks for is kept (see site_assets/README.md): the minified AMD widget bundle and its
# woff2/woff icon fonts, require.js, MathJax's tex-mml-chtml component with its woff-v2 fonts, its TeX
# extensions (autoloaded by macros such as \boldsymbol) and its menu component. Each package keeps its licence.
set -euo pipefail

HTML_MANAGER=1.0.6      # @jupyter-widgets/html-manager for ipywidgets 8 (what myst-nb 1.x loads from its CDN)
REQUIREJS=2.3.4         # the require.js myst-nb 1.x loads from its CDN
MATHJAX=3.2.2           # MathJax 3, the major version Sphinx 7 loads from its CDN

root="$(cd "$(dirname "$0")/.." && pwd)"
dest="$root/site_assets/vendor"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

cd "$work"
npm pack --silent "@jupyter-widgets/html-manager@$HTML_MANAGER" "requirejs@$REQUIREJS" "mathjax@$MATHJAX" >/dev/null
for pkg in jupyter-widgets-html-manager-$HTML_MANAGER requirejs-$REQUIREJS mathjax-$MATHJAX; do
    mkdir -p "$pkg" && tar xzf "$pkg.tgz" -C "$pkg" --strip-components=1
done

rm -rf "$dest"
hm="$dest/html-manager-$HTML_MANAGER"
mkdir -p "$hm/dist"
cp jupyter-widgets-html-manager-$HTML_MANAGER/LICENSE "$hm/"
cp jupyter-widgets-html-manager-$HTML_MANAGER/dist/embed-amd.js "$hm/dist/"
cp jupyter-widgets-html-manager-$HTML_MANAGER/dist/embed.js.LICENSE.txt "$hm/dist/"
# Font Awesome 5 (bundled in embed-amd.js's CSS): the formats current browsers pick (woff2, then woff)
cp jupyter-widgets-html-manager-$HTML_MANAGER/dist/*.woff2 jupyter-widgets-html-manager-$HTML_MANAGER/dist/*.woff "$hm/dist/"
# their licence is stated only inside the bundle's CSS: keep it beside the font files
grep -o 'Font Awesome Free [0-9.]* by @fontawesome - https://fontawesome.com\\n \* License - [^\\]*' \
    "$hm/dist/embed-amd.js" | sed 's/\\n \*/\n/' | sed -n '1,2p' > "$hm/dist/FONTS-LICENSE.txt"
test -s "$hm/dist/FONTS-LICENSE.txt"

rq="$dest/requirejs-$REQUIREJS"
mkdir -p "$rq"
cp requirejs-$REQUIREJS/require.js "$rq/"
# the npm tarball of 2.3.4 has no LICENSE file; require.js's header names its licence (MIT)
head -4 requirejs-$REQUIREJS/require.js > "$rq/LICENSE"

mj="$dest/mathjax-$MATHJAX"
mkdir -p "$mj/es5/output/chtml/fonts" "$mj/es5/input/tex"
cp mathjax-$MATHJAX/LICENSE "$mj/"
cp mathjax-$MATHJAX/es5/tex-mml-chtml.js "$mj/es5/"
cp -r mathjax-$MATHJAX/es5/output/chtml/fonts/woff-v2 "$mj/es5/output/chtml/fonts/"
cp -r mathjax-$MATHJAX/es5/input/tex/extensions "$mj/es5/input/tex/"
cp -r mathjax-$MATHJAX/es5/ui "$mj/es5/"

# record what was taken, with the npm integrity hashes, so a rerun can be compared
{
    echo "# written by scripts/vendor_site_assets.sh"
    for pkg in "@jupyter-widgets/html-manager@$HTML_MANAGER" "requirejs@$REQUIREJS" "mathjax@$MATHJAX"; do
        echo "$pkg $(npm view "$pkg" dist.integrity)"
    done
} > "$dest/VERSIONS"
du -sh "$dest"/*
