-- Users of the demo (passwords are demo values: change them anywhere else).
CREATE USER IF NOT EXISTS 'drc_repl'@'%' IDENTIFIED BY 'repl-demo';
GRANT REPLICATION SLAVE, REPLICATION CLIENT, BINLOG MONITOR, SELECT ON *.* TO 'drc_repl'@'%';
CREATE USER IF NOT EXISTS 'drc_apply'@'%' IDENTIFIED BY 'apply-demo';
GRANT ALL PRIVILEGES ON *.* TO 'drc_apply'@'%';
CREATE USER IF NOT EXISTS 'load'@'%' IDENTIFIED BY 'load-demo';
GRANT ALL PRIVILEGES ON shop.* TO 'load'@'%';
CREATE DATABASE IF NOT EXISTS shop;
