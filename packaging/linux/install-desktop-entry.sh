#!/bin/sh
# Add LoRKD Studio to the desktop menu of the current user (XDG: ~/.local/share), pointing at this folder.
# Run it from the built folder:  ./install-desktop-entry.sh        Undo:  ./install-desktop-entry.sh --remove
set -eu
here=$(cd "$(dirname "$0")" && pwd)
data=${XDG_DATA_HOME:-$HOME/.local/share}
desktop="$data/applications/lorkd-studio.desktop"
icon="$data/icons/hicolor/256x256/apps/lorkd-studio.png"
if [ "${1:-}" = "--remove" ]; then
    rm -f "$desktop" "$icon"
    echo "removed $desktop and $icon"
    exit 0
fi
mkdir -p "$(dirname "$desktop")" "$(dirname "$icon")"
cp "$here/share/icons/lorkd-studio.png" "$icon"
# Exec/TryExec get this folder's absolute path: the folder need not be on PATH
sed -e "s|^Exec=lorkd-studio|Exec=\"$here/lorkd-studio\"|" -e "s|^TryExec=lorkd-studio|TryExec=$here/lorkd-studio|" \
    "$here/share/applications/lorkd-studio.desktop" > "$desktop"
command -v update-desktop-database >/dev/null 2>&1 && update-desktop-database -q "$data/applications" || true
echo "installed $desktop and $icon"
