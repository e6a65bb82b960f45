#!/bin/sh
# bench/session_1206d/callA.sh OUT - call1.sh (the lead's tree) then branch tf32wg's run.sh, each tarred to OUT
O=${1:?}
sh bench/session_1206d/call1.sh /tmp/m; cp /tmp/m/logs.tgz "$O/lead.tgz"
echo "=== tf32wg"; sh .carry_tf32wg/run.sh /tmp/tw; cp /tmp/tw/logs.tgz "$O/tf32wg.tgz"
