/*
 * Courier dispatch :: RoutePlanner
 *
 * Road-graph shortest paths (Dijkstra and A*), a greedy multi-stop tour
 * builder with 2-opt improvement, and a scheduling service that assigns
 * delivery jobs to vans within their shift windows.
 *
 * Everything lives in one file for the design review; in the service these
 * are separate classes under com.example.dispatch.routing.
 */
package com.example.dispatch.routing;

import java.time.Duration;
import java.time.LocalTime;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.Comparator;
import java.util.Deque;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.PriorityQueue;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.logging.Logger;
import java.util.stream.Collectors;

public final class RoutePlanner {

    private static final Logger LOG = Logger.getLogger(RoutePlanner.class.getName());

    /** Mean Earth radius in metres, used by the haversine heuristic. */
    static final double EARTH_RADIUS_M = 6_371_000.0;

    /** Fastest legal speed anywhere in the network; keeps A* admissible. */
    static final double MAX_SPEED_MPS = 130.0 / 3.6;

    private RoutePlanner() {}

    // ------------------------------------------------------------------
    // Graph model
    // ------------------------------------------------------------------

    public record Node(long id, double lat, double lon) {}

    public record Edge(long from, long to, double lengthMeters, double speedMps, boolean toll) {
        double travelSeconds() {
            return lengthMeters / speedMps;
        }
    }

    /** Immutable adjacency-list road graph. */
    public static final class RoadGraph {
        private final Map<Long, Node> nodes;
        private final Map<Long, List<Edge>> outgoing;

        private RoadGraph(Map<Long, Node> nodes, Map<Long, List<Edge>> outgoing) {
            this.nodes = nodes;
            this.outgoing = outgoing;
        }

        public Node node(long id) {
            Node n = nodes.get(id);
            if (n == null) {
                throw new IllegalArgumentException("unknown node " + id);
            }
            return n;
        }

        public List<Edge> edgesFrom(long id) {
            return outgoing.getOrDefault(id, Collections.emptyList());
        }

        public int size() {
            return nodes.size();
        }

        /** Nearest node by straight-line distance; linear scan. */
        public Node nearest(double lat, double lon) {
            Node best = null;
            double bestD = Double.MAX_VALUE;
            for (Node n : nodes.values()) {
                double d = haversine(lat, lon, n.lat(), n.lon());
                if (d < bestD) {
                    bestD = d;
                    best = n;
                }
            }
            return best;
        }

        public static Builder builder() {
            return new Builder();
        }

        public static final class Builder {
            private final Map<Long, Node> nodes = new HashMap<>();
            private final Map<Long, List<Edge>> outgoing = new HashMap<>();

            public Builder node(long id, double lat, double lon) {
                nodes.put(id, new Node(id, lat, lon));
                return this;
            }

            public Builder road(long a, long b, double speedKmh, boolean oneWay) {
                Node na = nodes.get(a);
                Node nb = nodes.get(b);
                double len = haversine(na.lat(), na.lon(), nb.lat(), nb.lon());
                double mps = speedKmh / 3.6;
                outgoing.computeIfAbsent(a, k -> new ArrayList<>()).add(new Edge(a, b, len, mps, false));
                if (!oneWay) {
                    outgoing.computeIfAbsent(b, k -> new ArrayList<>()).add(new Edge(b, a, len, mps, false));
                }
                return this;
            }

            public RoadGraph build() {
                return new RoadGraph(Map.copyOf(nodes), outgoing);
            }
        }
    }

    static double haversine(double lat1, double lon1, double lat2, double lon2) {
        double dLat = Math.toRadians(lat2 - lat1);
        double dLon = Math.toRadians(lon2 - lon1);
        double a = Math.sin(dLat / 2) * Math.sin(dLat / 2)
                + Math.cos(Math.toRadians(lat1)) * Math.cos(Math.toRadians(lat2))
                * Math.sin(dLon / 2) * Math.sin(dLon / 2);
        return 2 * EARTH_RADIUS_M * Math.asin(Math.sqrt(a));
    }

    // ------------------------------------------------------------------
    // Shortest paths
    // ------------------------------------------------------------------

    public record Path(List<Long> nodes, double seconds, double meters) {
        static Path unreachable() {
            return new Path(List.of(), Double.POSITIVE_INFINITY, Double.POSITIVE_INFINITY);
        }

        boolean reachable() {
            return !nodes.isEmpty();
        }
    }

    /** Options shared by both search algorithms. */
    public record SearchOptions(boolean avoidTolls, double maxSeconds) {
        public static final SearchOptions DEFAULT = new SearchOptions(false, Double.POSITIVE_INFINITY);
    }

    private record QueueEntry(long node, double priority, double cost) {}

    public static Path dijkstra(RoadGraph g, long source, long target, SearchOptions opts) {
        Map<Long, Double> dist = new HashMap<>();
        Map<Long, Long> prev = new HashMap<>();
        Map<Long, Double> meters = new HashMap<>();
        PriorityQueue<QueueEntry> pq = new PriorityQueue<>(Comparator.comparingDouble(QueueEntry::priority));

        dist.put(source, 0.0);
        meters.put(source, 0.0);
        pq.add(new QueueEntry(source, 0.0, 0.0));

        while (!pq.isEmpty()) {
            QueueEntry cur = pq.poll();
            if (cur.node() == target) {
                return buildPath(prev, source, target, cur.cost(), meters.get(target));
            }
            if (cur.cost() > dist.getOrDefault(cur.node(), Double.POSITIVE_INFINITY)) {
                continue; // stale entry
            }
            if (cur.cost() > opts.maxSeconds()) {
                break;
            }
            for (Edge e : g.edgesFrom(cur.node())) {
                if (opts.avoidTolls() && e.toll()) {
                    continue;
                }
                double nd = cur.cost() + e.travelSeconds();
                if (nd < dist.getOrDefault(e.to(), Double.POSITIVE_INFINITY)) {
                    dist.put(e.to(), nd);
                    prev.put(e.to(), cur.node());
                    meters.put(e.to(), meters.get(cur.node()) + e.lengthMeters());
                    pq.add(new QueueEntry(e.to(), nd, nd));
                }
            }
        }
        return Path.unreachable();
    }

    public static Path aStar(RoadGraph g, long source, long target, SearchOptions opts) {
        Node goal = g.node(target);
        Map<Long, Double> gScore = new HashMap<>();
        Map<Long, Long> prev = new HashMap<>();
        Map<Long, Double> meters = new HashMap<>();
        Set<Long> closed = new HashSet<>();
        PriorityQueue<QueueEntry> open = new PriorityQueue<>(Comparator.comparingDouble(QueueEntry::priority));

        gScore.put(source, 0.0);
        meters.put(source, 0.0);
        open.add(new QueueEntry(source, heuristic(g.node(source), goal), 0.0));

        while (!open.isEmpty()) {
            QueueEntry cur = open.poll();
            if (cur.node() == target) {
                return buildPath(prev, source, target, cur.cost(), meters.get(target));
            }
            if (!closed.add(cur.node())) {
                continue;
            }
            for (Edge e : g.edgesFrom(cur.node())) {
                if (opts.avoidTolls() && e.toll()) {
                    continue;
                }
                if (closed.contains(e.to())) {
                    continue;
                }
                double tentative = cur.cost() + e.travelSeconds();
                if (tentative < gScore.getOrDefault(e.to(), Double.POSITIVE_INFINITY)) {
                    gScore.put(e.to(), tentative);
                    prev.put(e.to(), cur.node());
                    meters.put(e.to(), meters.get(cur.node()) + e.lengthMeters());
                    double f = tentative + heuristic(g.node(e.to()), goal);
                    open.add(new QueueEntry(e.to(), f, tentative));
                }
            }
        }
        return Path.unreachable();
    }

    /** Lower bound on travel time: straight-line distance at max speed. */
    static double heuristic(Node a, Node b) {
        return haversine(a.lat(), a.lon(), b.lat(), b.lon()) / (MAX_SPEED_MPS * 0.8);
    }

    private static Path buildPath(Map<Long, Long> prev, long source, long target, double seconds, double meters) {
        Deque<Long> stack = new ArrayDeque<>();
        Long at = target;
        while (at != null) {
            stack.push(at);
            if (at == source) {
                break;
            }
            at = prev.get(at);
        }
        return new Path(new ArrayList<>(stack), seconds, meters);
    }

    // ------------------------------------------------------------------
    // Distance matrix with caching
    // ------------------------------------------------------------------

    /** Memoising travel-time oracle shared by tour building and scheduling. */
    public static final class TravelTimes {
        private final RoadGraph graph;
        private final SearchOptions opts;
        private final Map<String, Path> cache = new ConcurrentHashMap<>();
        private long hits;
        private long misses;

        public TravelTimes(RoadGraph graph, SearchOptions opts) {
            this.graph = graph;
            this.opts = opts;
        }

        public Path path(long a, long b) {
            String key = a + "->" + b;
            Path cached = cache.get(key);
            if (cached != null) {
                hits++;
                return cached;
            }
            misses++;
            Path p = aStar(graph, a, b, opts);
            cache.put(key, p);
            return p;
        }

        public double seconds(long a, long b) {
            return a == b ? 0 : path(a, b).seconds();
        }

        public double[][] matrix(List<Long> stops) {
            int n = stops.size();
            double[][] m = new double[n][n];
            for (int i = 0; i < n; i++) {
                for (int j = 0; j < n; j++) {
                    m[i][j] = seconds(stops.get(i), stops.get(j));
                }
            }
            return m;
        }

        public String stats() {
            return String.format("cache size=%d hits=%d misses=%d", cache.size(), hits, misses);
        }
    }

    // ------------------------------------------------------------------
    // Tour building
    // ------------------------------------------------------------------

    /**
     * Orders stops starting and ending at the depot (index 0 of {@code stops})
     * using nearest-neighbour construction followed by 2-opt.
     */
    public static int[] buildTour(double[][] m) {
        int n = m.length;
        int[] tour = new int[n + 1];
        boolean[] visited = new boolean[n];
        tour[0] = 0;
        visited[0] = true;
        for (int pos = 1; pos < n; pos++) {
            int last = tour[pos - 1];
            int best = -1;
            double bestCost = Double.POSITIVE_INFINITY;
            for (int j = 1; j < n; j++) {
                if (!visited[j] && m[last][j] < bestCost) {
                    best = j;
                    bestCost = m[last][j];
                }
            }
            tour[pos] = best;
            visited[best] = true;
        }
        tour[n] = 0;
        twoOpt(tour, m);
        return tour;
    }

    static double tourCost(int[] tour, double[][] m) {
        double c = 0;
        for (int i = 0; i + 1 < tour.length; i++) {
            c += m[tour[i]][tour[i + 1]];
        }
        return c;
    }

    /**
     * Classic 2-opt: reverse segments while it shortens the tour. Note this
     * assumes a symmetric matrix; one-way streets make that only approximate.
     */
    static void twoOpt(int[] tour, double[][] m) {
        boolean improved = true;
        int rounds = 0;
        while (improved && rounds < 50) {
            improved = false;
            rounds++;
            for (int i = 1; i < tour.length - 2; i++) {
                for (int k = i + 1; k < tour.length - 1; k++) {
                    double before = m[tour[i - 1]][tour[i]] + m[tour[k]][tour[k + 1]];
                    double after = m[tour[i - 1]][tour[k]] + m[tour[i]][tour[k + 1]];
                    if (after + 1e-9 < before) {
                        reverse(tour, i, k);
                        improved = true;
                    }
                }
            }
        }
    }

    private static void reverse(int[] a, int i, int k) {
        while (i < k) {
            int t = a[i];
            a[i] = a[k];
            a[k] = t;
            i++;
            k--;
        }
    }

    // ------------------------------------------------------------------
    // Scheduling
    // ------------------------------------------------------------------

    public record Job(String id, long nodeId, LocalTime windowStart, LocalTime windowEnd,
                      Duration serviceTime, int parcels, int priority) {}

    public record Van(String id, long depotNode, LocalTime shiftStart, LocalTime shiftEnd, int capacity) {}

    public record Stop(Job job, LocalTime arrival, LocalTime departure) {}

    public record VanPlan(Van van, List<Stop> stops, LocalTime returnTime, double drivingSeconds) {
        int parcels() {
            return stops.stream().mapToInt(s -> s.job().parcels()).sum();
        }
    }

    public record Schedule(List<VanPlan> plans, List<Job> unassigned) {
        public String summary() {
            StringBuilder sb = new StringBuilder();
            for (VanPlan p : plans) {
                sb.append(p.van().id()).append(": ")
                  .append(p.stops().size()).append(" stops, ")
                  .append(p.parcels()).append(" parcels, back ")
                  .append(p.returnTime()).append('\n');
            }
            sb.append("unassigned: ").append(unassigned.size());
            return sb.toString();
        }
    }

    /**
     * Greedy insertion scheduler. Jobs are sorted by priority then window
     * end; each job is inserted into the van/position with the smallest
     * added driving time that keeps all time windows and capacity feasible.
     */
    public static final class SchedulingService {
        private final TravelTimes travel;
        private final ExecutorService pool;

        public SchedulingService(TravelTimes travel, int threads) {
            this.travel = travel;
            this.pool = Executors.newFixedThreadPool(threads);
        }

        public Schedule schedule(List<Van> vans, List<Job> jobs) {
            Map<String, List<Job>> routes = new LinkedHashMap<>();
            for (Van v : vans) {
                routes.put(v.id(), new ArrayList<>());
            }
            List<Job> unassigned = new ArrayList<>();

            List<Job> ordered = new ArrayList<>(jobs);
            ordered.sort(Comparator.comparingInt(Job::priority)
                    .thenComparing(Job::windowEnd));

            warmCache(vans, ordered);

            for (Job job : ordered) {
                Van bestVan = null;
                int bestPos = -1;
                double bestDelta = Double.POSITIVE_INFINITY;

                for (Van van : vans) {
                    List<Job> route = routes.get(van.id());
                    int load = route.stream().mapToInt(Job::parcels).sum();
                    if (load + job.parcels() > van.capacity()) {
                        continue;
                    }
                    for (int pos = 0; pos <= route.size(); pos++) {
                        List<Job> candidate = new ArrayList<>(route);
                        candidate.add(pos, job);
                        Optional<VanPlan> plan = simulate(van, candidate);
                        if (plan.isEmpty()) {
                            continue;
                        }
                        double delta = plan.get().drivingSeconds() - drivingSeconds(van, route);
                        if (delta < bestDelta) {
                            bestDelta = delta;
                            bestVan = van;
                            bestPos = pos;
                        }
                    }
                }

                if (bestVan == null) {
                    unassigned.add(job);
                } else {
                    routes.get(bestVan.id()).add(bestPos, job);
                }
            }

            List<VanPlan> plans = new ArrayList<>();
            for (Van v : vans) {
                simulate(v, routes.get(v.id())).ifPresent(plans::add);
            }
            LOG.info(() -> "scheduled " + (jobs.size() - unassigned.size()) + "/" + jobs.size()
                    + " jobs; " + travel.stats());
            return new Schedule(plans, unassigned);
        }

        /** Pre-computes depot->job and job->job paths in parallel. */
        private void warmCache(List<Van> vans, List<Job> jobs) {
            Set<Long> points = new HashSet<>();
            vans.forEach(v -> points.add(v.depotNode()));
            jobs.forEach(j -> points.add(j.nodeId()));
            List<Future<?>> futures = new ArrayList<>();
            for (long a : points) {
                futures.add(pool.submit(() -> {
                    for (long b : points) {
                        travel.seconds(a, b);
                    }
                }));
            }
            for (Future<?> f : futures) {
                try {
                    f.get();
                } catch (Exception e) {
                    LOG.warning("warm-up failed: " + e.getMessage());
                }
            }
        }

        private double drivingSeconds(Van van, List<Job> route) {
            return simulate(van, route).map(VanPlan::drivingSeconds).orElse(0.0);
        }

        /**
         * Walks the route from the depot, waiting for windows to open. Returns
         * empty if any window is missed or the van cannot be back before the
         * shift ends.
         */
        Optional<VanPlan> simulate(Van van, List<Job> route) {
            LocalTime clock = van.shiftStart();
            long at = van.depotNode();
            double driving = 0;
            List<Stop> stops = new ArrayList<>(route.size());

            for (Job job : route) {
                double leg = travel.seconds(at, job.nodeId());
                if (Double.isInfinite(leg)) {
                    return Optional.empty();
                }
                driving += leg;
                LocalTime arrival = clock.plusSeconds((long) leg);
                if (arrival.isBefore(job.windowStart())) {
                    arrival = job.windowStart();
                }
                if (arrival.isAfter(job.windowEnd())) {
                    return Optional.empty();
                }
                LocalTime departure = arrival.plus(job.serviceTime());
                stops.add(new Stop(job, arrival, departure));
                clock = departure;
                at = job.nodeId();
            }

            double back = travel.seconds(at, van.depotNode());
            driving += back;
            LocalTime ret = clock.plusSeconds((long) back);
            if (ret.isAfter(van.shiftEnd())) {
                return Optional.empty();
            }
            return Optional.of(new VanPlan(van, stops, ret, driving));
        }
    }

    // ------------------------------------------------------------------
    // Demo
    // ------------------------------------------------------------------

    public static void main(String[] args) {
        RoadGraph g = RoadGraph.builder()
                .node(1, 52.5200, 13.4050)
                .node(2, 52.5230, 13.4120)
                .node(3, 52.5180, 13.4200)
                .node(4, 52.5150, 13.4100)
                .node(5, 52.5260, 13.4010)
                .node(6, 52.5120, 13.3980)
                .road(1, 2, 50, false)
                .road(2, 3, 50, false)
                .road(3, 4, 30, false)
                .road(4, 1, 30, false)
                .road(1, 5, 50, true)
                .road(5, 2, 50, false)
                .road(4, 6, 30, false)
                .road(6, 1, 30, false)
                .build();

        Path d = dijkstra(g, 5, 6, SearchOptions.DEFAULT);
        Path a = aStar(g, 5, 6, SearchOptions.DEFAULT);
        System.out.printf("dijkstra %s %.0fs | a* %s %.0fs%n", d.nodes(), d.seconds(), a.nodes(), a.seconds());

        TravelTimes tt = new TravelTimes(g, SearchOptions.DEFAULT);
        List<Long> stops = List.of(1L, 3L, 5L, 6L, 2L);
        int[] tour = buildTour(tt.matrix(stops));
        System.out.println("tour: " + Arrays.stream(tour).mapToObj(i -> String.valueOf(stops.get(i)))
                .collect(Collectors.joining(" -> ")));

        List<Van> vans = List.of(
                new Van("VAN-A", 1, LocalTime.of(8, 0), LocalTime.of(12, 0), 20),
                new Van("VAN-B", 4, LocalTime.of(9, 0), LocalTime.of(17, 0), 10));
        List<Job> jobs = List.of(
                new Job("J1", 3, LocalTime.of(8, 0), LocalTime.of(9, 0), Duration.ofMinutes(5), 4, 1),
                new Job("J2", 5, LocalTime.of(10, 0), LocalTime.of(11, 0), Duration.ofMinutes(10), 6, 2),
                new Job("J3", 6, LocalTime.of(8, 30), LocalTime.of(16, 0), Duration.ofMinutes(5), 8, 2),
                new Job("J4", 2, LocalTime.of(23, 0), LocalTime.of(23, 30), Duration.ofMinutes(5), 1, 3),
                new Job("J5", 3, LocalTime.of(13, 0), LocalTime.of(15, 0), Duration.ofMinutes(15), 9, 1));

        SchedulingService svc = new SchedulingService(tt, 4);
        Schedule s = svc.schedule(vans, jobs);
        System.out.println(s.summary());
        for (VanPlan p : s.plans()) {
            for (Stop st : p.stops()) {
                System.out.printf("  %s %s arrive %s depart %s%n",
                        p.van().id(), st.job().id(), st.arrival(), st.departure());
            }
        }
        Objects.requireNonNull(s);
    }
}
