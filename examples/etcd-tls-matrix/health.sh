#!/bin/sh
# health.sh NODE CERT KEY: GET NODE's /health presenting CERT/KEY as the client certificate,
# trusting the run's default CA. Prints `accepted: <body>` or `refused: <curl's error>` and
# exits 0 either way, so that a step can say which refusal it expects.
set -u
node=$(echo "$1" | tr 'a-z-' 'A-Z_')
eval "url=\$TROUPE_${node}_CLIENT_URL"
if body=$(curl -sS --max-time 5 --cacert "$TROUPE_CA" --cert "$2" --key "$3" "$url/health" 2>&1); then
  echo "accepted: $body"
else
  echo "refused: $body"
fi
