#!/bin/sh
# The demo's write load: each region writes its own key range of shop.orders
# (region a: ids 1-999999, region b: from 1000000), and both update the
# shared shop.stock rows (conflict_policy = "overwrite" settles them).
set -eu
sql() { mariadb -h "$1" -u load -pload-demo -N -B shop -e "$2"; }
until sql db-a "SELECT 1" >/dev/null 2>&1 && sql db-b "SELECT 1" >/dev/null 2>&1; do sleep 1; done
sql db-a "CREATE TABLE IF NOT EXISTS orders (id BIGINT PRIMARY KEY, region CHAR(1) NOT NULL, qty INT NOT NULL, note VARCHAR(64))"
sql db-a "CREATE TABLE IF NOT EXISTS stock (sku INT PRIMARY KEY, qty INT NOT NULL)"
sql db-a "INSERT IGNORE INTO stock VALUES (1,100),(2,100),(3,100),(4,100)"
# The tables reach region b through DRC.
until sql db-b "SELECT COUNT(*) FROM stock" 2>/dev/null | grep -q 4; do sleep 1; done
i=0
while :; do
    i=$((i + 1))
    sql db-a "INSERT INTO orders VALUES ($i, 'a', $((i % 7)), 'from a')"
    sql db-b "INSERT INTO orders VALUES ($((1000000 + i)), 'b', $((i % 5)), 'from b')"
    sql db-a "UPDATE stock SET qty = qty - 1 WHERE sku = $((i % 4 + 1))"
    sql db-b "UPDATE stock SET qty = qty + 1 WHERE sku = $((i % 4 + 1))"
    sleep 0.2
done
