# Sourced by the target files: writes an aisbf config dir ($1) pointing at the nginx mock.
_d=$1
mkdir -p "$_d"
_up=${AISBF_UPSTREAM:-http://127.0.0.1:18080}
_p() { printf '{"type":"openai","endpoint":"%s","api_key":"sk-mock-upstream","models":[{"name":"bench-model"}]}' "$1"; }
printf '{"server":{"host":"127.0.0.1","port":17765}}\n' > "$_d/aisbf.json"
printf '{"providers":{"mock":%s,"mock2":%s,"mockstream":%s,"mockstream2":%s}}\n' \
  "$(_p "$_up/v1")" "$(_p "$_up/v1")" "$(_p "$_up/stream/v1")" "$(_p "$_up/stream/v1")" > "$_d/providers.json"
cat > "$_d/rotations.json" <<'JSON'
{"rotations": {
  "bench": {"providers": [
    {"provider_id": "mock", "models": [{"name": "bench-model", "weight": 1}]},
    {"provider_id": "mock2", "models": [{"name": "bench-model", "weight": 1}]}]},
  "bench-stream": {"providers": [
    {"provider_id": "mockstream", "models": [{"name": "bench-model", "weight": 1}]},
    {"provider_id": "mockstream2", "models": [{"name": "bench-model", "weight": 1}]}]}
}}
JSON
printf '{"autoselect":{}}\n' > "$_d/autoselect.json"
unset _d _up
unset -f _p
