#!/usr/bin/env bash
# A mail client in bash, written from docs/protocol.md alone: /dev/tcp for
# the connection, coreutils' sha1sum for the checksum, timeout for the wait.
#
#   bash examples/client.sh HOST PORT < commands.txt
#
# Standard input, as the 2017 client's menu reads it: a user name line, a
# password line, then per command its name and one line per field.
# bash cannot half-close a /dev/tcp socket, so a request is sent as a 2017
# client sends it (no terminator) and the server sees its end (a frame by its
# checksum, a login after 50 ms of quiet).  The reply is everything until the
# server closes, at most 5 s.  Exactly KO: sent again on a new connection, at
# most 3 more times.  No reply: help, getmsg, count, dump are sent again.
set -u
host=$1 port=$2
RETRIES=3 TIMEOUT=5

# exchange REQUEST: one request on a new connection; prints the reply.
exchange() {
    exec 3<>"/dev/tcp/$host/$port" || return 1
    printf '%s' "$1" >&3
    timeout "$TIMEOUT" cat <&3
    exec 3<&-
}

sha1() { printf '%s' "$1" | sha1sum | cut -d' ' -f1; }

# A field that is not the last: ':' travels as #3A and '#' as #23, when it
# holds a ':' or the mark #3A ("#, : and % inside fields").
escape() {
    local f=$1
    if [[ $f == *:* || $f == *'#3A'* ]]; then
        f=${f//\#/#23}
        f=${f//:/#3A}
    fi
    printf '%s' "$f"
}

send_command() {   # NAME FRAME
    local attempt reply
    for ((attempt = 0; attempt <= RETRIES; attempt++)); do
        reply=$(exchange "$2")
        if [[ -z $reply ]]; then
            case $1 in help|getmsg|count|dump) continue ;; esac
            echo "failed: no reply (the server may still have done it)"
            return
        fi
        if [[ $reply != KO ]]; then
            printf '%s\n' "$reply"
            return
        fi
    done
    echo "failed after $((RETRIES + 1)) attempts (KO every time)"
}

IFS= read -r user || exit 1
IFS= read -r password || exit 1
reply=$(exchange "$user:$password")
echo "$reply"
[[ $reply =~ ^OK:([0-9]{10}) ]] || exit 1
session=${BASH_REMATCH[1]}

declare -A FIELDS=([help]=0 [email]=3 [getmsg]=1 [count]=0 [delmsg]=2 [dump]=0 [logoff]=0)
while IFS= read -r name; do
    if [[ -z ${FIELDS[$name]+x} ]]; then
        echo "unknown command '$name'"
        continue
    fi
    content="$session:$name"
    for ((i = 0; i < FIELDS[$name]; i++)); do
        IFS= read -r field || field=
        if ((i < FIELDS[$name] - 1)); then field=$(escape "$field"); fi
        content+=":$field"
    done
    send_command "$name" "$content#$(sha1 "$content")"
    [[ $name == logoff ]] && break
done
exit 0
