# Sourced by scripts/run-demo.sh and scripts/check-demo.sh (from the repository's root).
# toml_value FILE SECTION KEY: the string value of KEY in [SECTION] of FILE; fails if unset
# (enough for the flat `key = "value"` lines of config/*.toml; not a TOML parser).
toml_value() {
  awk -v sec="[$2]" -v key="$3" '
    /^[[:space:]]*\[/ { gsub(/[[:space:]]/, ""); insec = ($0 == sec); next }
    insec && $0 ~ ("^[[:space:]]*" key "[[:space:]]*=") {
      sub(/^[^=]*=[[:space:]]*"/, ""); sub(/".*/, ""); print; found = 1; exit
    }
    END { exit !found }' "$1"
}
