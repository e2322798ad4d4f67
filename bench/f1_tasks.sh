# The RelBench rel-f1 driver tasks as rdl queries (sourced by the F1 benchmarks).
# f1_query TASK prints the PQL of driver-dnf, driver-top3 or driver-position.
f1_query() {
    case "$1" in
    driver-dnf) echo "PREDICT COUNT(results.* WHERE results.status_id != 1, 0, 30, days) > 0 FOR EACH drivers.driver_id ASSUMING COUNT(results.*, 0, 30, days) > 0" ;;
    driver-top3) echo "PREDICT MIN(qualifying.position, 0, 30, days) <= 3 FOR EACH drivers.driver_id ASSUMING COUNT(qualifying.*, 0, 30, days) > 0" ;;
    driver-position) echo "PREDICT AVG(results.position_order, 0, 60, days) FOR EACH drivers.driver_id ASSUMING COUNT(results.*, 0, 60, days) > 0" ;;
    esac
}
