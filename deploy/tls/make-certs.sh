#!/usr/bin/env bash
# Make a private CA and one certificate for the scheduler, workers and clients.
#   deploy/tls/make-certs.sh DIR [HOSTNAME]
# For production use your organisation's CA; keep *.key readable by the service only.
set -euo pipefail
dir=${1:?usage: make-certs.sh DIR [HOSTNAME]}
host=${2:-localhost}
mkdir -p "$dir" && cd "$dir"
openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=distgmm-ca" \
    -keyout ca.key -out ca.pem 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=$host" -keyout dask.key -out dask.csr 2>/dev/null
printf "subjectAltName=DNS:%s,DNS:localhost,IP:127.0.0.1\n" "$host" > san.ext
openssl x509 -req -in dask.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 \
    -extfile san.ext -out dask.pem 2>/dev/null
chmod 600 ./*.key
rm -f dask.csr san.ext ca.srl
echo "wrote $dir/ca.pem, $dir/dask.pem, $dir/dask.key"
