#!/bin/sh
# Initializes the data directory on first start, then runs mariadbd with the
# settings DRC needs. SERVER_ID and GTID_DOMAIN come from the compose file.
set -eu
if [ ! -d /var/lib/mysql/mysql ]; then
    mariadb-install-db --user=mysql --datadir=/var/lib/mysql --skip-test-db >/dev/null
fi
mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
exec mariadbd --user=mysql --datadir=/var/lib/mysql --bind-address=0.0.0.0 --port=3306 \
    --server-id="${SERVER_ID}" --gtid-domain-id="${GTID_DOMAIN}" \
    --log-bin=binlog --binlog-format=ROW --binlog-row-image=FULL --binlog-row-metadata=FULL \
    --init-file=/etc/mysql/drc-init.sql
