#!/bin/sh
# `make run`: creates a demo setup in ./demo (git-ignored) on first use and runs
# pop3d on it in the foreground on 127.0.0.1:1110. Usage: demo.sh PATH/TO/pop3d
set -eu
bin=$1
top=$(pwd)
demo=$top/demo
port=${POP3D_DEMO_PORT:-1110}
tls_port=${POP3D_DEMO_TLS_PORT:-1995}
user=demo@example.org

mkdir -p "$demo"
chmod 700 "$demo"
if [ ! -s "$demo/password" ]; then
	# 16 random letters and digits, generated once and kept for later runs.
	head -c 64 /dev/urandom | od -An -tx1 | tr -d ' \n' | cut -c1-16 > "$demo/password"
	chmod 600 "$demo/password"
fi
pass=$(cat "$demo/password")
if [ ! -s "$demo/users" ]; then
	hash=$(printf '%s\n' "$pass" | "$bin" --hash-password)
	printf '# demo users file: name:password (see etc/users.example)\n%s:%s\n' "$user" "$hash" > "$demo/users"
	chmod 600 "$demo/users"
fi

# A self-signed certificate for STLS on $port and implicit TLS on $tls_port.
if [ ! -s "$demo/cert.pem" ] || [ ! -s "$demo/key.pem" ]; then
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 825 \
		-subj "/CN=localhost" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
		-keyout "$demo/key.pem" -out "$demo/cert.pem" 2>/dev/null
	chmod 600 "$demo/key.pem"
fi

maildir=$demo/mail/example.org/demo/Maildir
if [ ! -d "$maildir" ]; then
	corpus=$top/../shared/corpus/make_corpus.py
	if [ -f "$corpus" ]; then
		python3 "$corpus" "$maildir"
	else
		mkdir -p "$maildir/new" "$maildir/cur" "$maildir/tmp"
		i=1
		while [ $i -le 5 ]; do
			printf 'From: demo@example.net\nTo: %s\nSubject: demo message %d\n\nHello, this is message %d.\n' \
				"$user" $i $i > "$maildir/new/$(date +%s).M${i}P$$.demo"
			i=$((i + 1))
		done
	fi
fi

cat > "$demo/pop3d.conf" <<CONF
# Demo configuration written by \`make run\`; see etc/pop3d.conf for every setting.
listen = (
  { address = "127.0.0.1"; port = $port; tls = "starttls"; },
  { address = "127.0.0.1"; port = $tls_port; tls = "implicit"; }
);
auth = {
  users_file = "users";
  plaintext = "tls-only";                # passwords only over TLS ...
  plaintext_trusted = ( "127.0.0.0/8" ); # ... except from this machine, for easy trying
};
maildrop = { path = "$demo/mail/%d/%n/Maildir"; };
tls = { certificate = "cert.pem"; key = "key.pem"; };
policy = { retention = "keep"; keep_days = 30; };   # CAPA says EXPIRE 30
CONF
if [ "$(id -u)" = 0 ]; then
	# pop3d refuses to serve as root unless told; a real setup sets process.user instead.
	echo 'process = { allow_root = true; };   # demo only' >> "$demo/pop3d.conf"
fi

"$bin" -c "$demo/pop3d.conf" -t
cat <<MSG

pop3d demo: user $user, password $pass
Maildir: $maildir  (rm -rf demo/ to start over)
Listening on 127.0.0.1:$port (clear text, STLS offered) and 127.0.0.1:$tls_port (implicit TLS),
with a self-signed certificate in demo/cert.pem. Try it from another terminal:
  curl -s pop3://127.0.0.1:$port/ -u '$user:$pass'                          # LIST
  curl -s pop3://127.0.0.1:$port/1 -u '$user:$pass'                         # RETR 1
  curl -s --ssl-reqd --cacert demo/cert.pem pop3://localhost:$port/1 -u '$user:$pass'   # STLS
  curl -s --cacert demo/cert.pem pop3s://localhost:$tls_port/ -u '$user:$pass'          # implicit TLS
  openssl s_client -quiet -starttls pop3 -connect 127.0.0.1:$port                      # then: CAPA
  python3 -c "import poplib; p=poplib.POP3('127.0.0.1',$port); p.user('$user'); p.pass_('$pass'); print(p.stat()); p.quit()"
  build/pop3d -c demo/pop3d.conf --expire --dry-run --at +31d                          # what expiry would remove
Stop with Ctrl-C.

MSG
exec "$bin" -c "$demo/pop3d.conf"
